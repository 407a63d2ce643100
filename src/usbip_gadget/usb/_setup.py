"""The 8-byte SETUP packet of a control transfer (USB 2.0 §9.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from usbip_gadget._errors import DescriptorError, LocalProtocolError
from usbip_gadget.usb._common import check_u8
from usbip_gadget.usb._enums import FeatureSelector, Request, RequestType
from usbip_gadget.usb._fields import Layout
from usbip_gadget.usb._layouts import SETUP

# Packing runs once per control transfer: the fields spelled out below pack several times
# faster than the table's generic pack, and test_fields holds the two to the same bytes.
_PACK = SETUP.struct.pack


@dataclass(frozen=True, slots=True)
class SetupPacket:
    """A SETUP packet (USB 2.0 §9.3, Table 9-2).

    Fields: bmRequestType, bRequest, wValue, wIndex, wLength.
    """

    bm_request_type: int
    b_request: int
    w_value: int = 0
    w_index: int = 0
    w_length: int = 0

    LAYOUT: ClassVar[Layout] = SETUP

    def __post_init__(self) -> None:
        SETUP.check(self)

    def pack(self) -> bytes:
        """The 8 bytes on the wire, little-endian."""
        return _PACK(
            self.bm_request_type, self.b_request, self.w_value, self.w_index, self.w_length
        )

    @classmethod
    def parse(cls, data: bytes) -> SetupPacket:
        """Decode exactly 8 bytes; ``DescriptorError`` otherwise."""
        if len(data) != SETUP.size:
            raise DescriptorError(f"SETUP packet: {len(data)} bytes, expected 8")
        return cls(*SETUP.values(data))

    @property
    def is_in(self) -> bool:
        """True when the data stage goes device-to-host."""
        return bool(self.bm_request_type & RequestType.IN)

    @property
    def type(self) -> int:
        """The type bits: ``RequestType.STANDARD``, ``CLASS``, ``VENDOR`` or ``RESERVED``."""
        return self.bm_request_type & RequestType.TYPE_MASK

    @property
    def recipient(self) -> int:
        """The recipient bits: ``RequestType.DEVICE``, ``INTERFACE``, ``ENDPOINT``, ``OTHER``..."""
        return self.bm_request_type & RequestType.RECIPIENT_MASK

    @classmethod
    def get_descriptor(
        cls,
        dtype: int,
        index: int,
        length: int,
        *,
        lang_id: int = 0,
        recipient: int = RequestType.DEVICE,
    ) -> SetupPacket:
        """GET_DESCRIPTOR (USB 2.0 §9.4.3).

        ``lang_id`` is wIndex: the language of a string descriptor, or the interface number
        when fetching a class descriptor such as a HID report (with ``recipient=INTERFACE``).
        """
        check_u8("descriptor type", dtype)
        check_u8("descriptor index", index)
        if recipient & ~RequestType.RECIPIENT_MASK:
            raise LocalProtocolError(f"recipient={recipient} is not a recipient code")
        request_type = RequestType.IN | RequestType.STANDARD | recipient
        return cls(request_type, Request.GET_DESCRIPTOR, dtype << 8 | index, lang_id, length)

    @classmethod
    def set_configuration(cls, value: int) -> SetupPacket:
        """SET_CONFIGURATION to bConfigurationValue ``value`` (USB 2.0 §9.4.7)."""
        check_u8("configuration value", value)
        return cls(RequestType.OUT | RequestType.DEVICE, Request.SET_CONFIGURATION, value)

    @classmethod
    def set_interface(cls, interface: int, alt: int) -> SetupPacket:
        """SET_INTERFACE selecting alternate setting ``alt`` of ``interface`` (USB 2.0 §9.4.10)."""
        check_u8("alternate setting", alt)
        check_u8("interface number", interface)
        request_type = RequestType.OUT | RequestType.INTERFACE
        return cls(request_type, Request.SET_INTERFACE, alt, interface)

    @classmethod
    def clear_feature_halt(cls, endpoint: int) -> SetupPacket:
        """CLEAR_FEATURE(ENDPOINT_HALT) on endpoint address ``endpoint`` (USB 2.0 §9.4.1)."""
        check_u8("endpoint address", endpoint)
        request_type = RequestType.OUT | RequestType.ENDPOINT
        return cls(request_type, Request.CLEAR_FEATURE, FeatureSelector.ENDPOINT_HALT, endpoint)
