"""System calls both kernel backends make: mounting their filesystems, blocking file calls.

Kept apart from either backend so that neither imports the other.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio

# Where our own mounts of functionfs and gadgetfs go.
MOUNT_ROOT = Path("/run/usbip-gadget")
# What a transfer on an endpoint file fails with once the host disabled the endpoint, the
# controller was unbound or the cable pulled.
SHUTDOWN_ERRNOS = frozenset({errno.ESHUTDOWN, errno.ECONNRESET, errno.ENODEV})
_MNT_DETACH = 2  # umount2 flag (include/linux/fs.h): detach now, release when unused

T = TypeVar("T")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def mount_filesystem(source: str, target: Path, fstype: str) -> int:
    """mount(2) with no flags and no data; 0, or the errno it failed with."""
    if _libc().mount(source.encode(), bytes(target), fstype.encode(), 0, None) != 0:
        return ctypes.get_errno() or errno.EIO
    return 0


def unmount(target: Path) -> None:
    """Detach ``target`` now; the kernel releases it once no file on it is open."""
    _libc().umount2(bytes(target), _MNT_DETACH)


async def in_thread(fn: Callable[[], T]) -> T:
    """Run a blocking call on a kernel file in a worker thread.

    If the caller is cancelled the thread is abandoned; it returns once the kernel completes
    or fails its request (unbinding the UDC fails them all).
    """
    return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)
