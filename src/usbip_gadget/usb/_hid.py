"""The HID class descriptor (HID 1.11 §6.2.1), which tells how long the report descriptor is."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from usbip_gadget._errors import DescriptorError
from usbip_gadget.usb._common import check_u8, check_u16
from usbip_gadget.usb._enums import DescriptorType
from usbip_gadget.usb._fields import Layout
from usbip_gadget.usb._layouts import HID

# Each class descriptor announced: bDescriptorType, wDescriptorLength (HID 1.11 §6.2.1).
_ENTRY = struct.Struct("<BH")


@dataclass(frozen=True, slots=True)
class HidDescriptor:
    """A HID descriptor (bDescriptorType 0x21 in a HID-class interface).

    Fields: bcdHID, bCountryCode, and the bNumDescriptors class descriptors it announces as
    (bDescriptorType, wDescriptorLength) pairs. bLength and bNumDescriptors are computed.
    ``LAYOUT`` is the table of the fixed part before those pairs.
    """

    bcd_hid: int
    b_country_code: int
    descriptors: tuple[tuple[int, int], ...] = ()

    LAYOUT: ClassVar[Layout] = HID

    def __post_init__(self) -> None:
        HID.check(self)
        for dtype, length in self.descriptors:
            check_u8("HID bDescriptorType", dtype)
            check_u16("HID wDescriptorLength", length)
        check_u8("HID bLength", HID.size + _ENTRY.size * len(self.descriptors))

    @property
    def report_length(self) -> int | None:
        """wDescriptorLength of the first report descriptor announced, if any."""
        for dtype, length in self.descriptors:
            if dtype == DescriptorType.HID_REPORT:
                return length
        return None

    def pack(self) -> bytes:
        """The descriptor's bytes."""
        count = len(self.descriptors)
        head = HID.pack(self, bLength=HID.size + _ENTRY.size * count, bNumDescriptors=count)
        return head + b"".join(_ENTRY.pack(dtype, length) for dtype, length in self.descriptors)

    @classmethod
    def parse(cls, data: bytes) -> HidDescriptor:
        """Decode one HID descriptor of ``len(data)`` bytes; ``DescriptorError`` otherwise."""
        if len(data) < HID.size or data[1] != DescriptorType.HID:
            raise DescriptorError(f"HID descriptor: not a HID descriptor ({data[:2].hex()})")
        fields = HID.unpack(data)
        size, count = fields["bLength"], fields["bNumDescriptors"]
        if size != len(data) or size != HID.size + _ENTRY.size * count:
            raise DescriptorError(
                f"HID descriptor: bLength {size} does not fit {count} class descriptors"
                f" in {len(data)} bytes"
            )
        entries = tuple(_ENTRY.iter_unpack(data[HID.size :]))
        return cls(**HID.arguments(data), descriptors=entries)
