"""The bench's ground floor: commands with a deadline, waiting on sysfs, finding USB devices.

Reading sysfs and waiting on it (event-driven, on kernel uevents) are the kernel tier's own
helpers (``tests.kernel._sysfs``, imported with the checkout on ``PYTHONPATH``); a wait that runs
out raises TimeoutError, an OSError, which the bench reports like its own failures.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.kernel import _sysfs
from tests.kernel._sysfs import read_text, usb_devices

COMMAND_TIMEOUT_S = 30.0
KILL_GRACE_S = 10.0
MASS_STORAGE_CLASS = "08"

_REASON_CHARS = 200


class BenchError(Exception):
    """A bench step failed; the message says which step and why, on one line."""


def one_line(text: str) -> str:
    """``text`` folded to one line of bounded length, for a table note."""
    folded = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return folded if len(folded) <= _REASON_CHARS else folded[: _REASON_CHARS - 1] + "…"


def run(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT_S) -> str:
    """Runs a command to completion and returns its stdout; failure or expiry is a BenchError.

    A command that outlives its deadline is killed; one that does not die (stuck in the kernel)
    is abandoned rather than waited for.
    """
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=KILL_GRACE_S)
        raise BenchError(f"{' '.join(argv[:3])}: no result within {timeout:g} s") from None
    if process.returncode != 0:
        detail = one_line(err or out) or "no message"
        raise BenchError(f"{' '.join(argv[:3])} exited {process.returncode}: {detail}")
    return out


def udc_host_buses(udc: str) -> frozenset[int]:
    """The host-side buses of a dummy UDC (``tests.kernel._sysfs``), failing as BenchError."""
    try:
        return _sysfs.udc_host_buses(udc)
    except (LookupError, ValueError) as exc:
        raise BenchError(f"{exc} (is dummy_hcd loaded with num=2?)") from None


def configured(device: Path) -> bool:
    """Whether the host has set a configuration on the device."""
    return read_text(device / "bConfigurationValue") not in ("", "0")


def the_configured_device(buses: frozenset[int], vid_pid: str | None = None) -> Path | None:
    """The one configured device on the buses (with ``idVendor:idProduct``, if given), or None."""
    devices = [
        device
        for device in usb_devices(buses)
        if vid_pid is None
        or f"{read_text(device / 'idVendor')}:{read_text(device / 'idProduct')}" == vid_pid
    ]
    if len(devices) > 1:
        raise BenchError(f"more than one device on bus {sorted(buses)}: {devices}")
    return devices[0] if devices and configured(devices[0]) else None


def storage_interface(device: Path) -> int:
    """The ``bInterfaceNumber`` of the device's mass-storage interface (``bInterfaceClass`` 08)."""
    for interface in sorted(device.glob(f"{device.name}:*")):
        if read_text(interface / "bInterfaceClass") == MASS_STORAGE_CLASS:
            return int(read_text(interface / "bInterfaceNumber"), 16)
    raise BenchError(f"{device.name} has no mass-storage interface")


def block_device(device: Path, size: int) -> Path | None:
    """The disk usb-storage made of the device, once its /dev node is there with ``size`` bytes."""
    for block in sorted(device.glob(f"{device.name}:*/host*/target*/*/block/*")):
        node = Path("/dev") / block.name
        if node.exists() and read_text(block / "size") == str(size // 512):
            return node
    return None


def usbfs_node(device: Path) -> Path:
    """The device's usbfs node, ``/dev/bus/usb/BBB/DDD`` (its ``DEVNAME`` uevent key)."""
    for line in read_text(device / "uevent").splitlines():
        key, _, value = line.partition("=")
        if key == "DEVNAME":
            return Path("/dev") / value
    raise BenchError(f"{device.name}: no DEVNAME in its uevent")
