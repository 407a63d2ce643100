"""ExceptionGroups at the edge of our public context managers: one error out, not a group."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

from usbip_gadget._errors import TransportError, UsbipGadgetError


@contextmanager
def collapse_single() -> Iterator[None]:
    """Re-raise a group holding one exception (ignoring Cancelled siblings) as that exception."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        real = [e for e in leaves if not isinstance(e, trio.Cancelled)]
        chosen = real or leaves[:1]
        if len(chosen) == 1 or (real and len({type(e) for e in real}) == 1):
            raise chosen[0] from None
        raise


@contextmanager
def collapse_ours() -> Iterator[None]:
    """Like ``collapse_single``, and a group of several of our own errors (Cancelled aside)
    is raised as one: a connection's end and the failures it caused in the tasks it fed are
    one failure, reported by its cause (a ``TransportError`` first)."""
    try:
        with collapse_single():
            yield
    except BaseExceptionGroup as group:
        real = [e for e in _leaves(group) if not isinstance(e, trio.Cancelled)]
        if not real or not all(isinstance(e, UsbipGadgetError) for e in real):
            raise
        causes = [e for e in real if isinstance(e, TransportError)]
        raise (causes or real)[0] from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
