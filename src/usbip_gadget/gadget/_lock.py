"""One usbip-gadget per gadget name: a lock taken before the gadget is built.

Two ``attach`` runs with the same ``--name`` would otherwise share one configfs directory,
and the second would unplug the first while building its own. Each takes an exclusive
``flock`` on ``NAME.lock`` in the lock directory (``/run/usbip-gadget``, or the
``USBIP_GADGET_LOCK_DIR`` environment variable) for as long as it runs; the kernel lets it go
when the process ends, however it ends. The file holds the owner's pid, for the message.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from usbip_gadget._errors import GadgetError

DEFAULT_LOCK_DIR = Path("/run/usbip-gadget")
LOCK_DIR_VARIABLE = "USBIP_GADGET_LOCK_DIR"


def lock_directory() -> Path:
    """Where the locks are: ``USBIP_GADGET_LOCK_DIR`` if set, else ``/run/usbip-gadget``."""
    return Path(os.environ.get(LOCK_DIR_VARIABLE) or DEFAULT_LOCK_DIR)


@contextmanager
def gadget_lock(name: str, directory: Path | None = None) -> Iterator[None]:
    """Hold gadget ``name`` for this process, or raise ``GadgetError`` (in use, or no lock)."""
    path = (directory or lock_directory()) / f"{name}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise GadgetError(f"cannot lock gadget {name}: {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GadgetError(
                f"gadget {name} is in use by another usbip-gadget{_owner(fd)}",
                hint="stop it, or choose another --name",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # lets the lock go; the file stays, so nobody locks a deleted one


def _owner(fd: int) -> str:
    try:
        pid = os.pread(fd, 16, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
