"""The bench's ground floor: commands with a deadline, waiting on sysfs, finding USB devices.

Waiting is event-driven: kernel uevents (netlink) wake the wait, and the condition is checked
again at least every quarter second for changes that send no uevent (attribute contents).
"""

from __future__ import annotations

import contextlib
import select
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

COMMAND_TIMEOUT_S = 30.0
KILL_GRACE_S = 10.0
USB_DEVICES = Path("/sys/bus/usb/devices")
PLATFORM = Path("/sys/devices/platform")
MASS_STORAGE_CLASS = "08"

_NETLINK_KOBJECT_UEVENT = 15
_RECHECK_S = 0.25
_REASON_CHARS = 200

T = TypeVar("T")


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


def read_text(path: Path) -> str:
    """The stripped contents of a sysfs attribute, or "" if it is gone."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


@contextlib.contextmanager
def _uevents() -> Iterator[socket.socket | None]:
    """A socket that becomes readable on every kernel uevent (None if netlink is refused)."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_KOBJECT_UEVENT)
    except OSError:
        yield None
        return
    with sock:
        try:
            sock.bind((0, 1))
        except OSError:
            yield None
            return
        yield sock


def _pause(sock: socket.socket | None, seconds: float) -> None:
    """Sleeps until the next uevent or for ``seconds``, whichever comes first."""
    if sock is None:
        time.sleep(seconds)
        return
    readable, _, _ = select.select([sock], [], [], seconds)
    while readable:
        try:
            sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break


def wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Calls ``probe`` until it returns something other than None; BenchError after ``timeout``."""
    deadline = time.monotonic() + timeout
    with _uevents() as sock:
        while (result := probe()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"{what}: not within {timeout:g} s")
            _pause(sock, min(remaining, _RECHECK_S))
    return result


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Waits until ``condition()`` is true; BenchError after ``timeout``."""
    wait_for(lambda: True if condition() else None, timeout, what)


def controller_buses(platform_glob: str) -> frozenset[int]:
    """Bus numbers of the root hubs of the platform devices matching a glob (``vhci_hcd.*``)."""
    return frozenset(
        int(text)
        for busnum in PLATFORM.glob(f"{platform_glob}/usb*/busnum")
        if (text := read_text(busnum)).isdigit()
    )


def udc_host_buses(udc: str) -> frozenset[int]:
    """The host-side buses of a dummy UDC: ``dummy_udc.N`` is wired to ``dummy_hcd.N``."""
    buses = controller_buses(f"dummy_hcd.{udc.rpartition('.')[2]}")
    if not buses:
        raise BenchError(f"{udc}: no host-side root hub (is dummy_hcd loaded with num=2?)")
    return buses


def usb_devices(buses: frozenset[int]) -> list[Path]:
    """Every device (not root hub, not interface) on the given buses."""
    return sorted(
        node
        for node in USB_DEVICES.iterdir()
        if ":" not in node.name
        and not node.name.startswith("usb")
        and (busnum := read_text(node / "busnum")).isdigit()
        and int(busnum) in buses
    )


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
