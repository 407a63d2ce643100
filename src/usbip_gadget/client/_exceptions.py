"""ExceptionGroup handling at the edge of our public context managers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio


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


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
