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
DEFAULT_CAPACITY = 1024
# aio_data of a PacketRing's slot: the ring's number above bit 16, the slot below; single
# requests are numbered below _RING_KEYS.
_RING_KEYS = 1 << 48
_SLOT_BITS = 16
_SLOT_MASK = (1 << _SLOT_BITS) - 1


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
        self._event_words = memoryview(self._events).cast("B").cast("q")
        self._pending: dict[int, _Request] = {}
        self._next_key = 0
        self._rings: dict[int, PacketRing] = {}
        self._next_ring = _RING_KEYS >> _SLOT_BITS

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
            # struct io_event is four 64-bit words: data, obj, res, res2. Read as one array
            # of words (a ring's batch is hundreds of events), not a ctypes field at a time.
            words = self._event_words
            for key, res in zip(words[0 : 4 * count : 4], words[2 : 4 * count : 4], strict=True):
                if key >= _RING_KEYS:
                    ring = self._rings.get(key >> _SLOT_BITS)
                    if ring is not None:
                        ring.completed(key & _SLOT_MASK, res)
                    continue
                request = self._pending.pop(key, None)
                if request is not None:
                    request.result = res
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
        return await self.finish(self._start(fd, opcode, address, length, keep))

    def start_write(self, fd: int, data: bytes) -> _Request:
        """Submit one write request on ``fd`` now; ``finish`` waits for it, ``abandon``
        cancels it. Requests on one file are served in the order they were submitted."""
        address = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0
        return self._start(fd, _IOCB_CMD_PWRITE, address, len(data), data)

    def _start(self, fd: int, opcode: int, address: int, length: int, keep: object) -> _Request:
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
        return request

    async def finish(self, request: _Request) -> int:
        """Wait for a started request: bytes moved, or ``OSError``; cancelled, it is
        cancelled in the kernel too."""
        try:
            await request.done.wait()
        except BaseException:
            self.abandon(request)
            raise
        if request.result < 0:
            raise OSError(-request.result, os.strerror(-request.result))
        return request.result

    def abandon(self, request: _Request) -> None:
        """Cancel a started request that is not done; its completion is reaped as usual."""
        if not request.done.is_set():
            self._cancel_request(request)

    def submit(self, iocbs: ctypes.Array[ctypes._Pointer[_Iocb]], first: int, count: int) -> int:
        """io_submit ``count`` iocbs of the pointer array ``iocbs`` from index ``first``;
        how many the kernel took (those before the first it refused)."""
        size = ctypes.sizeof(ctypes.c_void_p)
        start = ctypes.c_void_p(ctypes.addressof(iocbs) + first * size)
        submitted = self._syscall(self._submit_nr, self._context, count, start)
        if submitted < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"io_submit: {os.strerror(code)}")
        return submitted

    def cancel(self, iocb: _Iocb) -> None:
        """io_cancel: the request completes (through the ring) as cancelled."""
        self._syscall(self._cancel, self._context, ctypes.byref(iocb), None)

    def packet_ring(self, fd: int, packet: int, count: int) -> PacketRing:
        """``count`` one-packet reads on ``fd`` (``PacketRing``); nothing is submitted yet."""
        number = self._next_ring
        self._next_ring += 1
        ring = PacketRing(self, fd, packet, count, number << _SLOT_BITS)
        self._rings[number] = ring
        return ring

    def forget_ring(self, key: int) -> None:
        self._rings.pop(key >> _SLOT_BITS, None)

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
            self._rings.clear()


class PacketRing:
    """One-packet read requests kept queued on an OUT endpoint file, in a ring of slots.

    The controller fills them in the order they were queued, one packet each, so the packets
    the host sent come back with their boundaries (a short or zero-length one included)
    whatever the host's transfer lengths. The slots' iocbs and buffers are allocated once and
    resubmitted in batches: one io_submit per ``take``, not per packet.
    """

    def __init__(self, aio: Aio, fd: int, packet: int, count: int, key: int) -> None:
        if not 0 < count < 1 << _SLOT_BITS:
            raise ValueError(f"a ring has 1 to {(1 << _SLOT_BITS) - 1} slots")
        self._aio = aio
        self._packet = packet
        self._count = count
        self._key = key
        self._buffer = (ctypes.c_char * (packet * count))()
        self._iocbs = (_Iocb * count)()
        self._pointers = (ctypes.POINTER(_Iocb) * count)()
        self._base = base = ctypes.addressof(self._buffer)
        for slot in range(count):
            iocb = self._iocbs[slot]
            iocb.aio_data = key | slot
            iocb.aio_lio_opcode = _IOCB_CMD_PREAD
            iocb.aio_fildes = fd
            iocb.aio_buf = base + slot * packet
            iocb.aio_nbytes = packet
            iocb.aio_flags = _IOCB_FLAG_RESFD
            iocb.aio_resfd = aio._eventfd
            self._pointers[slot] = ctypes.pointer(iocb)
        self._results: list[int | None] = [None] * count  # None: queued or never submitted
        self._queued = [False] * count
        self._in_flight = 0
        self._head = 0
        self._closed = False
        self._ready = trio.Event()

    def start(self) -> None:
        """Queue every slot."""
        self._resubmit(0, self._count)

    def completed(self, slot: int, result: int) -> None:
        """A slot's read completed (called by the reaper)."""
        self._queued[slot] = False
        self._in_flight -= 1
        if self._closed:
            if not self._in_flight:
                self._aio.forget_ring(self._key)
            return
        self._results[slot] = result
        if slot == self._head:
            self._ready.set()

    async def take(self) -> list[bytes]:
        """The packets completed from the head on, at least one, as runs; their slots are
        requeued. A run is consecutive full packets with the short packet that ends it (one
        bytes object, read at once: the slots' buffers are adjacent); a zero-length packet is
        ``b""`` of its own. A failed read raises ``OSError`` once the packets before it have
        been taken.
        """
        while self._results[self._head] is None:
            self._ready = trio.Event()
            await self._ready.wait()
        runs: list[bytes] = []
        results, packet, count = self._results, self._packet, self._count
        first = slot = self._head
        run_start, run_length, taken = slot, 0, 0
        failure = 0
        while taken < count and (result := results[slot]) is not None:
            if result < 0:
                failure = result
                if not taken:  # the failed slot is the first: it is taken and requeued
                    results[slot] = None
                    slot, taken = (slot + 1) % count, 1
                break
            results[slot] = None
            taken += 1
            if result:
                run_length += result
            if result < packet or slot == count - 1:  # a run ends (the ring wraps after this)
                if run_length:
                    runs.append(ctypes.string_at(self._base + run_start * packet, run_length))
                if not result:
                    runs.append(b"")
                run_start, run_length = (slot + 1) % count, 0
            slot = (slot + 1) % count
        if run_length:
            runs.append(ctypes.string_at(self._base + run_start * packet, run_length))
        self._head = slot
        self._resubmit(first, taken)
        if failure and not runs:
            raise OSError(-failure, os.strerror(-failure))
        return runs

    def discard(self) -> int:
        """Drop the packets completed and not taken (their slots are requeued)."""
        dropped = 0
        while self._results[self._head] is not None:
            self._results[self._head] = None
            self._resubmit(self._head, 1)
            self._head = (self._head + 1) % self._count
            dropped += 1
        return dropped

    def _resubmit(self, first: int, count: int) -> None:
        while count:
            run = min(count, self._count - first)
            taken = self._aio.submit(self._pointers, first, run)
            self._queued[first : first + taken] = [True] * taken
            self._in_flight += taken
            if taken < run:  # the ring is broken: its owner stops
                raise OSError(errno.EAGAIN, f"io_submit took {taken} of {run} reads")
            first, count = 0, count - run

    def close(self) -> None:
        """Cancel what is queued; the buffers live until the last cancellation is reaped."""
        self._closed = True
        for slot in range(self._count):
            if self._queued[slot]:
                self._aio.cancel(self._iocbs[slot])
        if not self._in_flight:
            self._aio.forget_ring(self._key)


def open_aio() -> Aio | None:
    """A native AIO context, or None where the kernel or machine has none."""
    try:
        return Aio()
    except AioUnavailable:
        return None


AioRequest = _Request

__all__ = ["Aio", "AioRequest", "AioUnavailable", "PacketRing", "open_aio"]
