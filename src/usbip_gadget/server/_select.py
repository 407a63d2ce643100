"""Which local devices are exported: nothing unless the user selected it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from usbip_gadget._errors import UsbipGadgetError
from usbip_gadget.protocol import UsbDevice

#: bDeviceClass of a hub: hubs are never exported (``usbip bind`` refuses them too).
HUB_CLASS = 0x09

_VID_PID = re.compile(r"([0-9a-fA-F]{1,4}):([0-9a-fA-F]{1,4})")
_BUSID = re.compile(r"[0-9]+-[0-9]+(\.[0-9]+)*")


def parse_vid_pid(text: str) -> tuple[int, int]:
    """``"1d6b:0104"`` → (0x1d6b, 0x0104): idVendor and idProduct in hexadecimal."""
    match = _VID_PID.fullmatch(text)
    if match is None:
        raise UsbipGadgetError(f"{text!r} is not VID:PID (four hex digits each, as lsusb shows)")
    return int(match[1], 16), int(match[2], 16)


def check_busid(text: str) -> str:
    """A sysfs USB device name: bus, dash, port path (``"1-1"``, ``"3-2.4"``)."""
    if _BUSID.fullmatch(text) is None:
        raise UsbipGadgetError(f"{text!r} is not a bus ID like 1-1 or 3-2.4")
    return text


@dataclass(frozen=True, slots=True)
class Selection:
    """The devices the user chose: by idVendor:idProduct and by bus ID (either matches)."""

    ids: frozenset[tuple[int, int]] = frozenset()
    busids: frozenset[str] = frozenset()

    @classmethod
    def of(cls, ids: Iterable[tuple[int, int]] = (), busids: Iterable[str] = ()) -> Selection:
        return cls(frozenset(ids), frozenset(busids))

    @property
    def empty(self) -> bool:
        return not self.ids and not self.busids

    def matches(self, device: UsbDevice) -> bool:
        """Whether ``device`` is selected and is not a hub."""
        if device.b_device_class == HUB_CLASS:
            return False
        return (device.id_vendor, device.id_product) in self.ids or device.busid in self.busids

    def describe(self) -> str:
        """The selection as the command line spells it."""
        ids = [f"--allow {vid:04x}:{pid:04x}" for vid, pid in sorted(self.ids)]
        return " ".join(ids + [f"--busid {b}" for b in sorted(self.busids)])
