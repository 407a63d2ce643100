"""The Binary device Object Store (BOS, USB 3.2 §9.6.2) and its device capabilities."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from usbip_gadget._errors import DescriptorError, LocalProtocolError
from usbip_gadget.usb._common import check_u8
from usbip_gadget.usb._enums import DescriptorType
from usbip_gadget.usb._fields import Layout
from usbip_gadget.usb._layouts import BOS, DEVICE_CAPABILITY
from usbip_gadget.usb._raw import split_descriptors


class DeviceCapabilityType(IntEnum):
    """bDevCapabilityType values: USB 3.2 §9.6.2.1, Table 9-14."""

    WIRELESS_USB = 0x01
    USB_2_0_EXTENSION = 0x02
    SUPERSPEED_USB = 0x03
    CONTAINER_ID = 0x04
    PLATFORM = 0x05
    POWER_DELIVERY = 0x06
    BATTERY_INFO = 0x07
    PD_CONSUMER_PORT = 0x08
    PD_PROVIDER_PORT = 0x09
    SUPERSPEED_PLUS = 0x0A
    PRECISION_TIME_MEASUREMENT = 0x0B
    WIRELESS_USB_EXT = 0x0C
    BILLBOARD = 0x0D
    AUTHENTICATION = 0x0E
    BILLBOARD_EX = 0x0F
    CONFIGURATION_SUMMARY = 0x10


@dataclass(frozen=True, slots=True)
class DeviceCapability:
    """A device capability descriptor (USB 3.2 §9.6.2.1, Table 9-13), kept as bytes.

    ``data`` is everything after bLength, bDescriptorType and bDevCapabilityType.
    """

    b_dev_capability_type: int
    data: bytes = b""

    LAYOUT: ClassVar[Layout] = DEVICE_CAPABILITY

    def __post_init__(self) -> None:
        check_u8("bDevCapabilityType", self.b_dev_capability_type)
        if len(self.data) > 0xFF - DEVICE_CAPABILITY.size:
            raise LocalProtocolError(f"capability body of {len(self.data)} bytes exceeds 252")

    def pack(self) -> bytes:
        """The whole capability descriptor."""
        size = DEVICE_CAPABILITY.size + len(self.data)
        return DEVICE_CAPABILITY.pack(self, bLength=size) + self.data


@dataclass(frozen=True, slots=True)
class Bos:
    """A BOS descriptor (USB 3.2 §9.6.2, Table 9-12) with its capabilities in order.

    wTotalLength and bNumDeviceCaps are computed. ``LAYOUT`` is the table of the 5-byte
    header.
    """

    capabilities: tuple[DeviceCapability, ...] = ()

    LAYOUT: ClassVar[Layout] = BOS

    def pack(self) -> bytes:
        """The BOS descriptor followed by every capability."""
        body = b"".join(capability.pack() for capability in self.capabilities)
        total, count = BOS.size + len(body), len(self.capabilities)
        if total > 0xFFFF or count > 0xFF:
            raise LocalProtocolError("BOS is too large for wTotalLength / bNumDeviceCaps")
        return BOS.pack(self, wTotalLength=total, bNumDeviceCaps=count) + body


def bos_total_length(header: bytes) -> int:
    """wTotalLength from (at least) the 5-byte BOS header; ``DescriptorError`` if malformed."""
    if len(header) < BOS.size:
        raise DescriptorError(f"BOS header: {len(header)} bytes, need 5")
    fields = BOS.unpack(header)
    size, dtype, total = fields["bLength"], fields["bDescriptorType"], fields["wTotalLength"]
    if size != BOS.size or dtype != DescriptorType.BOS:
        raise DescriptorError(f"BOS header: bLength {size}, bDescriptorType {dtype:#04x}")
    if total < BOS.size:
        raise DescriptorError(f"BOS header: wTotalLength {total} is below 5")
    return total


def parse_bos(data: bytes, *, lenient: bool = False) -> Bos:
    """Decode a whole BOS (wTotalLength bytes).

    Strict mode checks wTotalLength, bNumDeviceCaps, and that every descriptor is a device
    capability of at least 3 bytes. Lenient mode stops at the last whole descriptor, ignores
    the count and skips descriptors that are not capabilities.
    """
    total = bos_total_length(data)
    if total != len(data) and not lenient:
        raise DescriptorError(f"BOS: wTotalLength is {total} but {len(data)} bytes")
    capabilities = tuple(
        DeviceCapability(**DEVICE_CAPABILITY.arguments(piece), data=piece[DEVICE_CAPABILITY.size :])
        for piece in split_descriptors(data[BOS.size : total], lenient=lenient)
        if _is_capability(piece, lenient=lenient)
    )
    count = BOS.unpack(data)["bNumDeviceCaps"]
    if count != len(capabilities) and not lenient:
        raise DescriptorError(
            f"BOS: bNumDeviceCaps is {count} but {len(capabilities)} capabilities follow"
        )
    return Bos(capabilities)


def _is_capability(piece: bytes, *, lenient: bool) -> bool:
    if piece[1] == DescriptorType.DEVICE_CAPABILITY and len(piece) >= DEVICE_CAPABILITY.size:
        return True
    if lenient:
        return False
    raise DescriptorError(f"BOS: descriptor {piece.hex()} is not a device capability")
