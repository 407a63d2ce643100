"""The bench's two measurements: sequential disk throughput with dd, and control round trips
through usbfs."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _bench_sysfs import BenchError, run

BLOCK = 1024 * 1024
DISK_SIZE = 32 * BLOCK
DD_TIMEOUT_S = 300.0
CONTROL_TIMEOUT_MS = 2000

# include/uapi/linux/usbdevice_fs.h (x86_64)
USBDEVFS_CONTROL = 0xC0185500  # _IOWR('U', 0, struct usbdevfs_ctrltransfer)
USBDEVFS_CLAIMINTERFACE = 0x8004550F  # _IOR('U', 15, unsigned int)
USBDEVFS_IOCTL = 0xC0105512  # _IOWR('U', 18, struct usbdevfs_ioctl)
USBDEVFS_DISCONNECT = 0x5516  # _IO('U', 22)

# Bulk-Only Transport 1.0, 3.2: Get Max LUN, class request to the interface, one byte back.
GET_MAX_LUN_REQUEST_TYPE = 0xA1
GET_MAX_LUN = 0xFE


@dataclass(frozen=True)
class Throughput:
    """Sequential write and read of the whole disk, in MB/s (10**6 bytes per second)."""

    write: float
    read: float


class _CtrlTransfer(ctypes.Structure):
    """``struct usbdevfs_ctrltransfer``."""

    _fields_ = (
        ("bRequestType", ctypes.c_uint8),
        ("bRequest", ctypes.c_uint8),
        ("wValue", ctypes.c_uint16),
        ("wIndex", ctypes.c_uint16),
        ("wLength", ctypes.c_uint16),
        ("timeout", ctypes.c_uint32),
        ("data", ctypes.c_void_p),
    )


class _Ioctl(ctypes.Structure):
    """``struct usbdevfs_ioctl``: an ioctl addressed to the driver of one interface."""

    _fields_ = (
        ("ifno", ctypes.c_int),
        ("ioctl_code", ctypes.c_int),
        ("data", ctypes.c_void_p),
    )


def _timed_dd(source: Path, target: Path, flag: str) -> float:
    """Copies the disk's worth of 1 MiB blocks with dd; returns the seconds it took."""
    argv = ["dd", f"if={source}", f"of={target}", "bs=1M", f"count={DISK_SIZE // BLOCK}"]
    start = time.perf_counter()
    run([*argv, flag, "conv=fsync", "status=none"], DD_TIMEOUT_S)
    return time.perf_counter() - start


def _digest(path: Path) -> bytes:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").digest()


def disk_throughput(disk: Path, backing: Path, scratch: Path) -> Throughput:
    """Writes fresh random data over the whole disk, reads it back, both with O_DIRECT.

    The figures count only if the read-back and the gadget's backing file both hold exactly
    what was written.
    """
    pattern, readback = scratch / "pattern", scratch / "readback"
    pattern.write_bytes(os.urandom(DISK_SIZE))
    readback.unlink(missing_ok=True)
    write_s = _timed_dd(pattern, disk, "oflag=direct")
    read_s = _timed_dd(disk, readback, "iflag=direct")
    expected = _digest(pattern)
    if _digest(readback) != expected:
        raise BenchError(f"what {disk} read back differs from what was written")
    if _digest(backing) != expected:
        raise BenchError("the gadget's backing file differs from what was written")
    return Throughput(write=DISK_SIZE / write_s / 1e6, read=DISK_SIZE / read_s / 1e6)


@contextlib.contextmanager
def claimed_interface(node: Path, interface: int) -> Iterator[int]:
    """Opens a usbfs node holding ``interface``, whose kernel driver is unbound first.

    usbfs passes an interface-recipient request only for an interface the opener has claimed
    (``check_ctrlrecip`` and ``checkintf`` in drivers/usb/core/devio.c), and a claim fails while
    a driver such as usb-storage is bound to it. The claim ends when the node is closed.
    """
    fd = os.open(node, os.O_RDWR)
    try:
        try:
            fcntl.ioctl(fd, USBDEVFS_IOCTL, _Ioctl(interface, USBDEVFS_DISCONNECT, None))
        except OSError as exc:
            if exc.errno != errno.ENODATA:  # ENODATA: no driver was bound
                raise
        fcntl.ioctl(fd, USBDEVFS_CLAIMINTERFACE, struct.pack("I", interface))
        yield fd
    finally:
        os.close(fd)


def control_rate(fd: int, interface: int, seconds: float) -> float:
    """GET_MAX_LUN round trips per second, for ``seconds``, on a claimed usbfs node."""
    answer = ctypes.create_string_buffer(1)
    transfer = _CtrlTransfer(
        GET_MAX_LUN_REQUEST_TYPE,
        GET_MAX_LUN,
        0,
        interface,
        len(answer),
        CONTROL_TIMEOUT_MS,
        ctypes.addressof(answer),
    )
    count = 0
    start = now = time.perf_counter()
    while now - start < seconds:
        try:
            length = fcntl.ioctl(fd, USBDEVFS_CONTROL, transfer)
        except OSError as exc:
            raise BenchError(f"GET_MAX_LUN #{count + 1}: {exc.strerror}") from None
        if length != 1 or answer.raw != b"\x00":  # one LUN: the highest LUN number is 0
            raise BenchError(f"GET_MAX_LUN #{count + 1} answered {answer.raw[:length].hex()}")
        count += 1
        now = time.perf_counter()
    return count / (now - start)
