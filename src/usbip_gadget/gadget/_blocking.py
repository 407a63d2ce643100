"""Blocking endpoint I/O in worker threads, for files without usable AIO.

A read or write on a gadget endpoint file blocks until the host moves the data. When the task
waiting for it is cancelled the call goes on in its thread, and what it returns is not lost:
the next read on the file takes the data of an earlier read that completed after its caller
left, and the next write waits for an earlier one to finish, so order is kept.

``interrupt`` sends the thread a signal. GadgetFS (``ep_io``) dequeues the request when its
wait is interrupted and returns EINTR (or the data that arrived first); the calls go through
libc directly, as Python would restart them. That frees an endpoint that must be closed and
reopened (an alternate setting switched) while the host sends nothing. Waiting for the
interrupted call to end is awaited: the loop runs meanwhile.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import threading
from collections.abc import Callable

import trio

INTERRUPT = signal.SIGUSR2
_INTERRUPT_EVERY_S = 0.05
_libc = ctypes.CDLL(None, use_errno=True)
_libc.read.restype = ctypes.c_ssize_t
_libc.write.restype = ctypes.c_ssize_t


def install_interrupt_handler() -> None:
    """Give INTERRUPT a handler, so that it interrupts a blocked call instead of killing the
    process (the default). Must run in the main thread; a handler already there is kept."""
    if signal.getsignal(INTERRUPT) in (signal.SIG_DFL, None):
        signal.signal(INTERRUPT, lambda _signum, _frame: None)


def libc_read(fd: int, length: int) -> bytes:
    buffer = ctypes.create_string_buffer(max(1, length))
    count = _libc.read(fd, buffer, length)
    if count < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return buffer.raw[:count]


def libc_write(fd: int, data: bytes) -> int:
    count = _libc.write(fd, data, len(data))
    if count < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return int(count)


class Outstanding:
    """One blocking call running in its own thread; ``wait`` for it, cancellably."""

    def __init__(self, call: Callable[[], bytes | int]) -> None:
        self._call = call
        self._token = trio.lowlevel.current_trio_token()
        self._done = trio.Event()
        self._finished = threading.Event()
        self._result: bytes | int | None = None
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            self._result = self._call()
        except OSError as exc:
            self._error = exc
        self._finished.set()
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._done.set)

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    async def wait(self) -> bytes | int:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def interrupt(self) -> None:
        """Signal the thread while its call is blocked (the kernel gives it up)."""
        ident = self._thread.ident
        if ident is not None and not self._finished.is_set():
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pthread_kill(ident, INTERRUPT)

    async def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the call to end, the loop running meanwhile; True if
        it did. Not cancelled from outside: a caller that must know waits its time."""
        with trio.CancelScope(shield=True), trio.move_on_after(timeout):
            await self._done.wait()
        return self.finished


async def _finish(call: Outstanding) -> bytes | int:
    """What ``call`` returned; one interrupted reads as the endpoint shut down."""
    try:
        return await call.wait()
    except OSError as exc:
        if exc.errno == errno.EINTR:
            raise OSError(errno.ESHUTDOWN, "interrupted") from None
        raise


class ThreadedFile:
    """Reads and writes on one endpoint file, each in a worker thread (see the module)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._reading: Outstanding | None = None
        self._writing: Outstanding | None = None

    async def read(self, length: int) -> bytes:
        if self._reading is None:
            fd = self._fd
            self._reading = Outstanding(lambda: libc_read(fd, length))
        try:
            data = await _finish(self._reading)
        except OSError:
            self._reading = None
            raise
        self._reading = None
        assert isinstance(data, bytes)
        return data

    async def write(self, data: bytes) -> int:
        if self._writing is not None:
            with contextlib.suppress(OSError):  # the earlier caller left; not this write's
                await self._writing.wait()
        fd = self._fd
        self._writing = Outstanding(lambda: libc_write(fd, data))
        try:
            count = await _finish(self._writing)
        except OSError:
            self._writing = None
            raise
        self._writing = None
        assert isinstance(count, int)
        return count

    async def interrupt(self, patience: float = 1.0) -> None:
        """Interrupt the calls still blocked and wait up to ``patience`` s for them to end."""
        for call in (self._reading, self._writing):
            tries = max(1, int(patience / _INTERRUPT_EVERY_S))
            while call is not None and not call.finished and tries:
                call.interrupt()  # again if it arrived before the call blocked
                await call.join(_INTERRUPT_EVERY_S)
                tries -= 1


__all__ = [
    "INTERRUPT",
    "Outstanding",
    "ThreadedFile",
    "install_interrupt_handler",
    "libc_read",
    "libc_write",
]
