"""Linux native AIO (io_setup, io_submit, io_getevents, io_cancel) on trio, for f_fs endpoints.

FunctionFS endpoint files cannot be polled, but they take asynchronous requests:
``ffs_epfile_read_iter``/``write_iter`` queue a USB request and return ``-EIOCBQUEUED``.
Each request names an eventfd (``IOCB_FLAG_RESFD``); the kernel bumps it when the request
completes, and one reaper task waiting on it with ``trio.lowlevel.wait_readable`` collects
the completions from the context's ring. A transfer then costs two system calls and no worker
thread.

Buffers: f_fs copies a write's data when it is submitted, and copies a read's data into the
caller's buffer when it completes (from a kernel worker). So a read buffer, and every iocb
(``io_cancel`` finds a request by its iocb's address), stays referenced until its completion is
reaped, even when the task that waited for it was cancelled.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys
from dataclasses import dataclass, field

import trio

# (io_setup, io_destroy, io_submit, io_cancel, io_getevents) per architecture.
_GENERIC = (0, 1, 2, 3, 4)  # include/uapi/asm-generic/unistd.h
_ARM = (243, 244, 246, 247, 245)  # arch/arm/tools/syscall.tbl (EABI)
_SYSCALLS = {
    "x86_64": (206, 207, 209, 210, 208),
    "i686": (245, 246, 248, 249, 247),
    "i386": (245, 246, 248, 249, 247),
    "aarch64": _GENERIC,
    "riscv64": _GENERIC,
    "armv6l": _ARM,
    "armv7l": _ARM,
    "armv8l": _ARM,
}
# What a 32-bit process on each 64-bit kernel is. (x32 processes are not told apart from i386
# ones; no distribution ships Python for x32.)
_BITS32 = {"x86_64": "i686", "aarch64": "armv7l"}
_IOCB_CMD_PREAD = 0
_IOCB_CMD_PWRITE = 1
_IOCB_FLAG_RESFD = 1
DEFAULT_CAPACITY = 256


class AioUnavailable(OSError):
    """This kernel or machine gives no native AIO; blocking calls in threads will do."""


class _Iocb(ctypes.Structure):
    """``struct iocb`` (include/uapi/linux/aio_abi.h), little-endian layout."""

    _fields_ = (
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    )


class _IoEvent(ctypes.Structure):
    """``struct io_event``."""

    _fields_ = (
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    )


@dataclass(eq=False)
class _Request:
    iocb: _Iocb
    buffer: object  # what the kernel reads from or writes into, kept alive until reaped
    done: trio.Event = field(default_factory=trio.Event)
    result: int = 0


def _syscall_numbers() -> tuple[int, int, int, int, int]:
    """The table of this process's ABI: a 32-bit Python on a 64-bit kernel (Raspberry Pi OS
    on a 64-bit kernel, i386 on x86_64) makes 32-bit system calls."""
    machine = platform.machine()
    if ctypes.sizeof(ctypes.c_void_p) == 4:
        machine = _BITS32.get(machine, machine)
    elif machine in _BITS32.values() or machine.startswith("arm"):
        machine = "?"  # a 64-bit process claiming a 32-bit machine: do not guess
    numbers = _SYSCALLS.get(machine)
    if numbers is None or sys.byteorder != "little":
        raise AioUnavailable(errno.ENOSYS, f"no native AIO table for {platform.machine()}")
    return numbers


class Aio:
    """One AIO context and its eventfd. ``run`` must be running for requests to complete."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._setup, self._destroy, self._submit_nr, self._cancel, self._getevents = (
            _syscall_numbers()
        )
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        self._context = ctypes.c_ulong(0)
        if self._syscall(self._setup, capacity, ctypes.byref(self._context)) < 0:
            code = ctypes.get_errno()
            raise AioUnavailable(code, f"io_setup: {os.strerror(code)}")
        try:
            self._eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except OSError:
            self._syscall(self._destroy, self._context)
            raise
        self._capacity = capacity
        self._events = (_IoEvent * capacity)()
        self._pending: dict[int, _Request] = {}
        self._next_key = 0

    def _syscall(self, number: int, *args: object) -> int:
        result: int = self._libc.syscall(number, *args)
        return result

    async def run(self) -> None:
        """Reap completions for as long as the context lives."""
        while True:
            await trio.lowlevel.wait_readable(self._eventfd)
            try:
                os.read(self._eventfd, 8)
            except BlockingIOError:
                continue
            self._reap()

    def _reap(self) -> None:
        while True:
            count = self._syscall(
                self._getevents, self._context, 0, self._capacity, self._events, None
            )
            if count < 0:
                if ctypes.get_errno() == errno.EINTR:
                    continue
                raise OSError(ctypes.get_errno(), "io_getevents failed")
            for event in self._events[:count]:
                request = self._pending.pop(event.data, None)
                if request is not None:
                    request.result = event.res
                    request.done.set()
            if count < self._capacity:
                return

    async def read(self, fd: int, length: int) -> bytes:
        """One read request on ``fd`` of up to ``length`` bytes; raises OSError on failure."""
        buffer = (ctypes.c_char * max(1, length))()
        count = await self._request(fd, _IOCB_CMD_PREAD, ctypes.addressof(buffer), length, buffer)
        return buffer.raw[:count]

    async def write(self, fd: int, data: bytes) -> int:
        """One write request on ``fd``; returns how many bytes the kernel took."""
        address = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0
        return await self._request(fd, _IOCB_CMD_PWRITE, address, len(data), data)

    async def _request(self, fd: int, opcode: int, address: int, length: int, keep: object) -> int:
        self._next_key += 1
        iocb = _Iocb(
            aio_data=self._next_key,
            aio_lio_opcode=opcode,
            aio_fildes=fd,
            aio_buf=address,
            aio_nbytes=length,
            aio_flags=_IOCB_FLAG_RESFD,
            aio_resfd=self._eventfd,
        )
        request = _Request(iocb, keep)
        pointers = (ctypes.POINTER(_Iocb) * 1)(ctypes.pointer(iocb))
        if self._syscall(self._submit_nr, self._context, 1, pointers) != 1:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        self._pending[self._next_key] = request
        try:
            await request.done.wait()
        except BaseException:
            if not request.done.is_set():
                self._cancel_request(request)
            raise
        if request.result < 0:
            raise OSError(-request.result, os.strerror(-request.result))
        return request.result

    def _cancel_request(self, request: _Request) -> None:
        # Since Linux 4.19 the cancelled request's completion always comes through the ring
        # (io_cancel answers EINPROGRESS); it is reaped, and its buffer freed, then.
        self._syscall(self._cancel, self._context, ctypes.byref(request.iocb), None)

    def close(self) -> None:
        """Destroy the context (the kernel cancels what is left and waits for it) and the fd."""
        if self._context.value:
            self._syscall(self._destroy, self._context)
            self._context = ctypes.c_ulong(0)
            os.close(self._eventfd)
            self._pending.clear()


def open_aio() -> Aio | None:
    """A native AIO context, or None where the kernel or machine has none."""
    try:
        return Aio()
    except AioUnavailable:
        return None


__all__ = ["Aio", "AioUnavailable", "open_aio"]
