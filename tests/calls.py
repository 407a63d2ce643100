"""A call running in the background of a trio test, whose outcome is awaited later."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import outcome
import trio

T = TypeVar("T")


class Call(Generic[T]):
    """A call running in a nursery; ``result()`` waits for it and re-raises its error."""

    def __init__(self, nursery: trio.Nursery, fn: Callable[[], Awaitable[T]]) -> None:
        self._done = trio.Event()
        self._outcome: outcome.Outcome[T] | None = None
        nursery.start_soon(self._run, fn)

    async def _run(self, fn: Callable[[], Awaitable[T]]) -> None:
        self._outcome = await outcome.acapture(fn)
        self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def result(self) -> T:
        await self._done.wait()
        assert self._outcome is not None
        return self._outcome.unwrap()
