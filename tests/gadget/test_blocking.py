"""Blocking calls in worker threads: interrupting them and waiting for them keeps the loop
running (a thread that ignores the interrupt costs the loop nothing)."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable

import trio

from usbip_gadget.gadget._blocking import Outstanding, ThreadedFile, install_interrupt_handler


def _sleeping(seconds: float, result: bytes) -> Callable[[], bytes]:
    """A call that returns ``result`` after ``seconds`` (``sleep`` resumes after EINTR)."""

    def call() -> bytes:
        time.sleep(seconds)
        return result

    return call


async def _ticking(ticks: list[float]) -> None:
    while True:
        ticks.append(trio.current_time())
        await trio.sleep(0.01)


async def test_an_interrupted_read_ends_as_a_shut_down_endpoint() -> None:
    install_interrupt_handler()
    r, w = os.pipe()
    failures: list[int | None] = []

    async def read(endpoint: ThreadedFile) -> None:
        try:
            await endpoint.read(8)
        except OSError as exc:
            failures.append(exc.errno)

    try:
        endpoint = ThreadedFile(r)
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read, endpoint)
                await trio.sleep(0.05)  # the thread is blocked in read(2) by now
                await endpoint.interrupt()
    finally:
        os.close(r)
        os.close(w)
    assert failures == [errno.ESHUTDOWN]


async def test_waiting_for_a_call_that_ignores_interrupts_lets_the_loop_run() -> None:
    install_interrupt_handler()
    call = Outstanding(_sleeping(0.3, b"late"))
    ticks: list[float] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_ticking, ticks)
            call.interrupt()
            assert not await call.join(0.1)
            nursery.cancel_scope.cancel()
        assert len(ticks) >= 3
        assert await call.wait() == b"late"


async def test_a_wait_for_a_call_is_not_cut_short_by_cancellation() -> None:
    call = Outstanding(_sleeping(0.05, b"done"))
    with trio.CancelScope() as scope:
        scope.cancel()
        assert await call.join(5)  # the caller must know whether the call ended
    assert await call.wait() == b"done"
