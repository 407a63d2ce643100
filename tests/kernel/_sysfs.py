"""Finding USB devices, and what the kernel made of them, in sysfs.

Waiting is event-driven: kernel uevents (netlink) wake the wait, and the condition is checked
again at least every quarter second for changes that send no uevent (attribute contents).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

USB_DEVICES = Path("/sys/bus/usb/devices")
PLATFORM = Path("/sys/devices/platform")
SYS_CHAR = Path("/sys/dev/char")

_NETLINK_KOBJECT_UEVENT = 15
_RECHECK_S = 0.25

T = TypeVar("T")


def read_text(path: Path) -> str:
    """The stripped contents of a sysfs attribute, or "" if it is gone."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def controller_buses(platform_glob: str) -> frozenset[int]:
    """Bus numbers of the root hubs of the platform devices matching a glob (``vhci_hcd.*``)."""
    return frozenset(
        int(text)
        for busnum in PLATFORM.glob(f"{platform_glob}/usb*/busnum")
        if (text := read_text(busnum)).isdigit()
    )


def udc_host_buses(udc: str) -> frozenset[int]:
    """The host-side buses of a dummy UDC: ``dummy_udc.N`` is wired to ``dummy_hcd.N``."""
    prefix, dot, index = udc.rpartition(".")
    if prefix != "dummy_udc" or not dot:
        raise ValueError(f"{udc} is not a dummy_hcd UDC")
    buses = controller_buses(f"dummy_hcd.{index}")
    if not buses:
        raise LookupError(f"{udc}: no root hub under {PLATFORM}/dummy_hcd.{index}")
    return buses


def vhci_buses() -> frozenset[int]:
    """Bus numbers of every vhci-hcd root hub (high speed and SuperSpeed, every controller)."""
    return controller_buses("vhci_hcd.*")


def usb_devices(buses: frozenset[int]) -> list[Path]:
    """Every device (not root hub, not interface) on the given buses."""
    found = []
    for node in USB_DEVICES.iterdir():
        if ":" in node.name or node.name.startswith("usb"):
            continue
        busnum = read_text(node / "busnum")
        if busnum.isdigit() and int(busnum) in buses:
            found.append(node)
    return sorted(found)


def find_devices(buses: frozenset[int], vid: int, pid: int) -> list[Path]:
    """The devices with ``idVendor:idProduct`` == ``vid:pid`` on the given buses."""
    wanted = (f"{vid:04x}", f"{pid:04x}")
    return [
        node
        for node in usb_devices(buses)
        if (read_text(node / "idVendor"), read_text(node / "idProduct")) == wanted
    ]


def configured_device(buses: frozenset[int], vid: int, pid: int) -> Path | None:
    """The one matching device once the host has set a configuration, else None."""
    devices = find_devices(buses, vid, pid)
    if len(devices) > 1:
        raise LookupError(f"{vid:04x}:{pid:04x} is on more than one port: {devices}")
    if devices and read_text(devices[0] / "bConfigurationValue") not in ("", "0"):
        return devices[0]
    return None


def descriptors(device: Path) -> bytes:
    """The raw ``descriptors`` file: the device descriptor, then every configuration in full."""
    return (device / "descriptors").read_bytes()


def interface_drivers(device: Path) -> dict[str, str]:
    """Interface name (``3-1:1.0``) -> the driver bound to it ("" if none)."""
    return {
        interface.name: (interface / "driver").resolve().name
        if (interface / "driver").exists()
        else ""
        for interface in sorted(device.glob(f"{device.name}:*"))
    }


def block_devices(device: Path) -> list[Path]:
    """The disks usb-storage made of the device (``/dev/sdX``)."""
    pattern = f"{device.name}:*/host*/target*/*/block/*"
    return [Path("/dev") / block.name for block in sorted(device.glob(pattern))]


def tty_devices(device: Path, prefix: str = "ttyACM") -> list[Path]:
    """The ttys a driver created on the device's interfaces (``/dev/ttyACMN``)."""
    pattern = f"{device.name}:*/tty/{prefix}*"
    return [Path("/dev") / tty.name for tty in sorted(device.glob(pattern))]


def event_devices(device: Path) -> list[Path]:
    """The evdev nodes (``/dev/input/eventN``) of the input devices made from the device."""
    pattern = f"{device.name}:*/*/input/input*/event*"
    return [Path("/dev/input") / event.name for event in sorted(device.glob(pattern))]


def usbfs_node(device: Path) -> Path | None:
    """The device's usbfs node, ``/dev/bus/usb/BBB/DDD`` (its ``DEVNAME`` uevent key), once the
    device has one."""
    for line in read_text(device / "uevent").splitlines():
        key, _, value = line.partition("=")
        if key == "DEVNAME":
            return Path("/dev") / value
    return None


def char_device_node(numbers: str) -> Path:
    """The /dev node of a character device given as ``major:minor``."""
    for line in (SYS_CHAR / numbers / "uevent").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "DEVNAME":
            return Path("/dev") / value
    raise LookupError(f"no DEVNAME for character device {numbers}")


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
        time.sleep(min(seconds, 0.1))
        return
    readable, _, _ = select.select([sock], [], [], seconds)
    while readable:
        try:
            sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break


def wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Calls ``probe`` until it returns something other than None; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    with _uevents() as sock:
        while True:
            result = probe()
            if result is not None:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{what}: not within {timeout:g} s")
            _pause(sock, min(remaining, _RECHECK_S))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Waits until ``condition()`` is true; fails after ``timeout``."""
    wait_for(lambda: True if condition() else None, timeout, what)


def first_path(paths: list[Path]) -> Path | None:
    """The first of ``paths`` that exists as a file system node, for use with wait_for."""
    return next((path for path in paths if os.path.exists(path)), None)
