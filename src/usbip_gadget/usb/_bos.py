"""The Binary device Object Store (BOS, USB 3.2 §9.6.2) and its device capabilities."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from usbip_gadget._errors import DescriptorError, LocalProtocolError
from usbip_gadget.usb._common import check_u8
from usbip_gadget.usb._config_parse import split_descriptors
from usbip_gadget.usb._enums import DescriptorType

_HEADER = struct.Struct("<BBHB")
_CAPABILITY_HEADER = 3


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

    def __post_init__(self) -> None:
        check_u8("bDevCapabilityType", self.b_dev_capability_type)
        if len(self.data) > 0xFF - _CAPABILITY_HEADER:
            raise LocalProtocolError(f"capability body of {len(self.data)} bytes exceeds 252")

    def pack(self) -> bytes:
        """The whole capability descriptor."""
        head = (len(self.data) + 3, DescriptorType.DEVICE_CAPABILITY, self.b_dev_capability_type)
        return bytes(head) + self.data


@dataclass(frozen=True, slots=True)
class Bos:
    """A BOS descriptor (USB 3.2 §9.6.2, Table 9-12) with its capabilities in order.

    wTotalLength and bNumDeviceCaps are computed.
    """

    capabilities: tuple[DeviceCapability, ...] = ()

    def pack(self) -> bytes:
        """The BOS descriptor followed by every capability."""
        body = b"".join(capability.pack() for capability in self.capabilities)
        total = _HEADER.size + len(body)
        if total > 0xFFFF or len(self.capabilities) > 0xFF:
            raise LocalProtocolError("BOS is too large for wTotalLength / bNumDeviceCaps")
        header = _HEADER.pack(_HEADER.size, DescriptorType.BOS, total, len(self.capabilities))
        return header + body


def bos_total_length(header: bytes) -> int:
    """wTotalLength from (at least) the 5-byte BOS header; ``DescriptorError`` if malformed."""
    if len(header) < _HEADER.size:
        raise DescriptorError(f"BOS header: {len(header)} bytes, need 5")
    size, dtype, total, _count = _HEADER.unpack_from(header)
    if size != _HEADER.size or dtype != DescriptorType.BOS:
        raise DescriptorError(f"BOS header: bLength {size}, bDescriptorType {dtype:#04x}")
    if total < _HEADER.size:
        raise DescriptorError(f"BOS header: wTotalLength {total} is below 5")
    return int(total)


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
        DeviceCapability(piece[2], piece[3:])
        for piece in split_descriptors(data[_HEADER.size : total], lenient=lenient)
        if _is_capability(piece, lenient=lenient)
    )
    if data[4] != len(capabilities) and not lenient:
        raise DescriptorError(
            f"BOS: bNumDeviceCaps is {data[4]} but {len(capabilities)} capabilities follow"
        )
    return Bos(capabilities)


def _is_capability(piece: bytes, *, lenient: bool) -> bool:
    if piece[1] == DescriptorType.DEVICE_CAPABILITY and len(piece) >= _CAPABILITY_HEADER:
        return True
    if lenient:
        return False
    raise DescriptorError(f"BOS: descriptor {piece.hex()} is not a device capability")
