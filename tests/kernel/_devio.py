"""Reading and writing the device nodes the kernel tests drive, always with a deadline."""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import select
import struct
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

SECTOR = 512
OPEN_TIMEOUT_S = 10.0
_DIRECT_CHUNK = 1024 * 1024

# struct input_event on 64-bit Linux: struct timeval, __u16 type, __u16 code, __s32 value.
INPUT_EVENT = struct.Struct("llHHi")
EV_KEY = 0x01
KEY_A = 30

KeyEvent = tuple[int, int, int]  # (type, code, value)


def _remaining(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"{what}: deadline passed")
    return left


def disk_size(node: Path) -> int:
    """The size in bytes the kernel reports for a block device (``/sys/class/block/X/size``)."""
    sectors = Path(f"/sys/class/block/{node.name}/size").read_text()
    return int(sectors) * SECTOR


def open_disk(node: Path, flags: int, timeout: float = OPEN_TIMEOUT_S) -> int:
    """Opens a block device that has just appeared: its sysfs entry and node come before
    the kernel lets it be opened (ENXIO meanwhile), so that is waited out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(node, flags)
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def read_disk(node: Path, size: int) -> bytes:
    """Reads ``size`` bytes from a block device with O_DIRECT, so every byte crosses the bus."""
    buffer = mmap.mmap(-1, _DIRECT_CHUNK)  # page aligned, as O_DIRECT requires
    fd = open_disk(node, os.O_RDONLY | os.O_DIRECT)
    content = bytearray()
    try:
        while len(content) < size:
            count = os.readv(fd, [buffer])
            if count == 0:
                break
            content += buffer[:count]
    finally:
        os.close(fd)
        buffer.close()
    return bytes(content[:size])


def write_disk_direct(node: Path, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` past the page cache (O_DIRECT, O_SYNC): it is on the
    device when this returns."""
    buffer = mmap.mmap(-1, len(data))  # page aligned, as O_DIRECT requires
    buffer[:] = data
    fd = open_disk(node, os.O_WRONLY | os.O_DIRECT | os.O_SYNC)
    try:
        assert os.pwritev(fd, [buffer], offset) == len(data)
    finally:
        os.close(fd)
        buffer.close()


def first_difference(actual: bytes, expected: bytes) -> int | None:
    """The offset of the first differing byte (or of the shorter end), None if equal."""
    if actual == expected:
        return None
    limit = min(len(actual), len(expected))
    return next((i for i in range(limit) if actual[i] != expected[i]), limit)


def write_all(fd: int, data: bytes, deadline: float, what: str) -> None:
    """Writes all of ``data`` to a non-blocking fd, waiting for it to become writable."""
    view = memoryview(data)
    while view:
        _, writable, _ = select.select([], [fd], [], _remaining(deadline, what))
        if writable:
            with contextlib.suppress(BlockingIOError):
                view = view[os.write(fd, view) :]


def read_exactly(fd: int, count: int, deadline: float, what: str) -> bytes:
    """Reads exactly ``count`` bytes from a non-blocking fd before the deadline."""
    data = bytearray()
    while len(data) < count:
        readable, _, _ = select.select([fd], [], [], _remaining(deadline, what))
        if readable:
            with contextlib.suppress(BlockingIOError):
                data += os.read(fd, count - len(data))
    return bytes(data)


@contextlib.contextmanager
def raw_tty(node: Path) -> Iterator[int]:
    """Opens a tty non-blocking in raw mode (no echo, no line discipline translation)."""
    fd = os.open(node, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        tty.setraw(fd)
        yield fd
    finally:
        os.close(fd)


def read_key_events(
    fd: int, stop: Callable[[KeyEvent], bool], deadline: float, what: str
) -> list[KeyEvent]:
    """Reads EV_KEY events from an evdev fd until ``stop(event)`` is true."""
    events: list[KeyEvent] = []
    pending = b""
    while True:
        readable, _, _ = select.select([fd], [], [], _remaining(deadline, what))
        if not readable:
            continue
        with contextlib.suppress(BlockingIOError):
            pending += os.read(fd, INPUT_EVENT.size * 64)
        while len(pending) >= INPUT_EVENT.size:
            _sec, _usec, kind, code, value = INPUT_EVENT.unpack_from(pending)
            pending = pending[INPUT_EVENT.size :]
            if kind == EV_KEY:
                events.append((kind, code, value))
                if stop(events[-1]):
                    return events


def type_key_a(hidg: Path, event_node: Path, deadline: float) -> list[KeyEvent]:
    """A boot-keyboard report pressing 'a' (usage 0x04) then one releasing it, written to the
    source gadget's ``hidg``; the key events ``event_node`` gave until KEY_A went up."""
    press = bytes([0, 0, 0x04, 0, 0, 0, 0, 0])
    events_fd = os.open(event_node, os.O_RDONLY | os.O_NONBLOCK)
    report_fd = os.open(hidg, os.O_WRONLY | os.O_NONBLOCK)
    try:
        write_all(report_fd, press, deadline, f"press report to {hidg}")
        write_all(report_fd, bytes(8), deadline, f"release report to {hidg}")
        return read_key_events(
            events_fd,
            lambda event: event == (EV_KEY, KEY_A, 0),
            deadline,
            f"KEY_A down and up on {event_node}",
        )
    finally:
        os.close(report_fd)
        os.close(events_fd)
