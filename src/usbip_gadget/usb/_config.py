"""The configuration tree: configuration, IADs, alternate settings, endpoints, raw descriptors.

The model keeps the wire order of every descriptor so that a parsed configuration packs back
to the same bytes:

- ``Configuration.extra``: descriptors between the configuration header and the first
  interface or IAD (an OTG descriptor, for instance);
- ``Configuration.body``: IADs and interface descriptors (alternate settings) in wire order;
- ``InterfaceAssociation.extra``: descriptors between an IAD and the next interface;
- ``InterfaceDescriptor.extra``: descriptors after the interface, before its first endpoint
  (the HID descriptor, CDC functional and UAC/UVC class-specific descriptors...);
- ``EndpointDescriptor.extra``: descriptors after the endpoint (SuperSpeed companion,
  CS_ENDPOINT...).

Lengths and counts (bLength, wTotalLength, bNumInterfaces, bNumEndpoints) are computed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from usbip_gadget._errors import DescriptorError, LocalProtocolError
from usbip_gadget.usb._common import check_fields, check_u8
from usbip_gadget.usb._enums import DescriptorType, TransferType
from usbip_gadget.usb._hid import HidDescriptor

CONFIG_LAYOUT = struct.Struct("<BBHBBBBB")
INTERFACE_LAYOUT = struct.Struct("<BBBBBBBBB")
ENDPOINT_LAYOUT = struct.Struct("<BBBBHB")
IAD_LAYOUT = struct.Struct("<BBBBBBBB")

HID_CLASS = 0x03


@dataclass(frozen=True, slots=True)
class RawDescriptor:
    """A descriptor kept as bytes: class-specific, vendor, or anything not modelled here.

    ``data`` is everything after bLength and bDescriptorType; bLength is computed.
    """

    b_descriptor_type: int
    data: bytes = b""

    def __post_init__(self) -> None:
        check_u8("bDescriptorType", self.b_descriptor_type)
        if len(self.data) > 253:
            raise LocalProtocolError(f"descriptor body of {len(self.data)} bytes exceeds 253")

    @property
    def b_length(self) -> int:
        """bLength: the whole descriptor's size."""
        return len(self.data) + 2

    @property
    def subtype(self) -> int | None:
        """bDescriptorSubtype (the third byte) of a class-specific descriptor, if present."""
        return self.data[0] if self.data else None

    def pack(self) -> bytes:
        """The whole descriptor."""
        return bytes((self.b_length, self.b_descriptor_type)) + self.data

    @classmethod
    def parse(cls, data: bytes) -> RawDescriptor:
        """Wrap exactly one descriptor (bLength must equal ``len(data)``)."""
        if len(data) < 2 or data[0] != len(data):
            raise DescriptorError(f"descriptor: bLength does not match {len(data)} bytes")
        return cls(data[1], bytes(data[2:]))


def _pack_all(descriptors: tuple[RawDescriptor, ...]) -> bytes:
    return b"".join(descriptor.pack() for descriptor in descriptors)


@dataclass(frozen=True, slots=True)
class EndpointDescriptor:
    """An endpoint descriptor (USB 2.0 §9.6.6, Table 9-13) and the descriptors after it.

    Fields: bEndpointAddress, bmAttributes, wMaxPacketSize, bInterval; bRefresh and
    bSynchAddress are the two extra bytes of a 9-byte audio endpoint (UAC1 §4.6.1.1), both
    None for the standard 7-byte form.
    """

    b_endpoint_address: int
    bm_attributes: int
    w_max_packet_size: int
    b_interval: int
    b_refresh: int | None = None
    b_synch_address: int | None = None
    extra: tuple[RawDescriptor, ...] = ()

    def __post_init__(self) -> None:
        u8 = ("b_endpoint_address", "bm_attributes", "b_interval")
        check_fields(self, u8=u8, u16=("w_max_packet_size",))
        if (self.b_refresh is None) != (self.b_synch_address is None):
            raise LocalProtocolError("bRefresh and bSynchAddress come together or not at all")
        if self.b_refresh is not None and self.b_synch_address is not None:
            check_fields(self, u8=("b_refresh", "b_synch_address"))

    @property
    def b_length(self) -> int:
        """7, or 9 for the audio form."""
        return 7 if self.b_refresh is None else 9

    @property
    def number(self) -> int:
        """The endpoint number (bits 3..0 of bEndpointAddress)."""
        return self.b_endpoint_address & 0x0F

    @property
    def is_in(self) -> bool:
        """True for a device-to-host endpoint."""
        return bool(self.b_endpoint_address & 0x80)

    @property
    def transfer_type(self) -> TransferType:
        """Control, isochronous, bulk or interrupt."""
        return TransferType(self.bm_attributes & 0x03)

    @property
    def max_packet_size(self) -> int:
        """Bytes per packet (bits 10..0 of wMaxPacketSize)."""
        return self.w_max_packet_size & 0x07FF

    @property
    def packets_per_microframe(self) -> int:
        """1 + the additional transactions of a high-speed high-bandwidth endpoint (bits 12..11)."""
        return ((self.w_max_packet_size >> 11) & 0x03) + 1

    def pack(self) -> bytes:
        """This endpoint descriptor followed by its extra descriptors."""
        head = ENDPOINT_LAYOUT.pack(
            self.b_length,
            DescriptorType.ENDPOINT,
            self.b_endpoint_address,
            self.bm_attributes,
            self.w_max_packet_size,
            self.b_interval,
        )
        if self.b_refresh is not None and self.b_synch_address is not None:
            head += bytes((self.b_refresh, self.b_synch_address))
        return head + _pack_all(self.extra)

    @classmethod
    def parse(cls, data: bytes) -> EndpointDescriptor:
        """Decode an endpoint descriptor and the descriptors after it (strict)."""
        from usbip_gadget.usb._config_parse import parse_endpoint

        return parse_endpoint(data)


@dataclass(frozen=True, slots=True)
class InterfaceDescriptor:
    """One alternate setting: an interface descriptor (USB 2.0 §9.6.5, Table 9-12) and its tree.

    Fields: bInterfaceNumber, bAlternateSetting, bInterfaceClass, bInterfaceSubClass,
    bInterfaceProtocol, iInterface; bNumEndpoints is ``len(endpoints)``.
    """

    b_interface_number: int
    b_alternate_setting: int
    b_interface_class: int
    b_interface_sub_class: int
    b_interface_protocol: int
    i_interface: int = 0
    endpoints: tuple[EndpointDescriptor, ...] = ()
    extra: tuple[RawDescriptor, ...] = ()

    def __post_init__(self) -> None:
        u8 = (
            "b_interface_number",
            "b_alternate_setting",
            "b_interface_class",
            "b_interface_sub_class",
            "b_interface_protocol",
            "i_interface",
        )
        check_fields(self, u8=u8)
        check_u8("bNumEndpoints", len(self.endpoints))

    @property
    def b_num_endpoints(self) -> int:
        """bNumEndpoints, computed."""
        return len(self.endpoints)

    def hid_descriptor(self) -> HidDescriptor | None:
        """The HID descriptor of a HID-class interface, or None.

        Looked for after the interface, then after its endpoints (where a few devices put it).
        Type 0x21 means something else in other classes (DFU, smart card), so only HID-class
        interfaces are searched. ``DescriptorError`` if it is malformed.
        """
        if self.b_interface_class != HID_CLASS:
            return None
        candidates = self.extra + tuple(raw for ep in self.endpoints for raw in ep.extra)
        for raw in candidates:
            if raw.b_descriptor_type == DescriptorType.HID:
                return HidDescriptor.parse(raw.pack())
        return None

    def pack(self) -> bytes:
        """This interface descriptor, its extra descriptors, then its endpoints."""
        head = INTERFACE_LAYOUT.pack(
            INTERFACE_LAYOUT.size,
            DescriptorType.INTERFACE,
            self.b_interface_number,
            self.b_alternate_setting,
            len(self.endpoints),
            self.b_interface_class,
            self.b_interface_sub_class,
            self.b_interface_protocol,
            self.i_interface,
        )
        return head + _pack_all(self.extra) + b"".join(ep.pack() for ep in self.endpoints)

    @classmethod
    def parse(cls, data: bytes) -> InterfaceDescriptor:
        """Decode an interface descriptor and everything after it (strict)."""
        from usbip_gadget.usb._config_parse import parse_interface

        return parse_interface(data)


@dataclass(frozen=True, slots=True)
class InterfaceAssociation:
    """An interface association descriptor (IAD; USB 2.0 ECN, USB 3.2 §9.6.4, Table 9-18).

    Fields: bFirstInterface, bInterfaceCount, bFunctionClass, bFunctionSubClass,
    bFunctionProtocol, iFunction.
    """

    b_first_interface: int
    b_interface_count: int
    b_function_class: int
    b_function_sub_class: int
    b_function_protocol: int
    i_function: int = 0
    extra: tuple[RawDescriptor, ...] = ()

    def __post_init__(self) -> None:
        u8 = (
            "b_first_interface",
            "b_interface_count",
            "b_function_class",
            "b_function_sub_class",
            "b_function_protocol",
            "i_function",
        )
        check_fields(self, u8=u8)

    def pack(self) -> bytes:
        """This IAD followed by its extra descriptors."""
        head = IAD_LAYOUT.pack(
            IAD_LAYOUT.size,
            DescriptorType.INTERFACE_ASSOCIATION,
            self.b_first_interface,
            self.b_interface_count,
            self.b_function_class,
            self.b_function_sub_class,
            self.b_function_protocol,
            self.i_function,
        )
        return head + _pack_all(self.extra)


@dataclass(frozen=True, slots=True)
class Configuration:
    """A configuration descriptor (USB 2.0 §9.6.3, Table 9-10) and everything it contains.

    Fields: bConfigurationValue, iConfiguration, bmAttributes, bMaxPower (in 2 mA units, 8 mA
    at SuperSpeed). wTotalLength and bNumInterfaces are computed; see the module docstring
    for ``extra`` and ``body``.
    """

    b_configuration_value: int
    i_configuration: int = 0
    bm_attributes: int = 0x80
    b_max_power: int = 50
    extra: tuple[RawDescriptor, ...] = ()
    body: tuple[InterfaceAssociation | InterfaceDescriptor, ...] = ()

    def __post_init__(self) -> None:
        u8 = ("b_configuration_value", "i_configuration", "bm_attributes", "b_max_power")
        check_fields(self, u8=u8)

    @property
    def alt_settings(self) -> tuple[InterfaceDescriptor, ...]:
        """Every interface descriptor, in wire order."""
        return tuple(item for item in self.body if isinstance(item, InterfaceDescriptor))

    @property
    def associations(self) -> tuple[InterfaceAssociation, ...]:
        """Every IAD, in wire order."""
        return tuple(item for item in self.body if isinstance(item, InterfaceAssociation))

    @property
    def b_num_interfaces(self) -> int:
        """bNumInterfaces: the number of distinct bInterfaceNumber values."""
        return len(self.interfaces())

    @property
    def w_total_length(self) -> int:
        """wTotalLength: the size of ``pack()``."""
        return len(self.pack())

    def interfaces(self) -> dict[int, tuple[InterfaceDescriptor, ...]]:
        """Alternate settings grouped by interface number (in order of first appearance)."""
        grouped: dict[int, list[InterfaceDescriptor]] = {}
        for alt in self.alt_settings:
            grouped.setdefault(alt.b_interface_number, []).append(alt)
        return {number: tuple(alts) for number, alts in grouped.items()}

    def endpoints(self) -> tuple[EndpointDescriptor, ...]:
        """The endpoints of every alternate setting, in wire order."""
        return tuple(ep for alt in self.alt_settings for ep in alt.endpoints)

    def hid_report_lengths(self) -> list[tuple[int, int]]:
        """(bInterfaceNumber, wDescriptorLength) of each HID interface's first report descriptor.

        One entry per interface number (its first alternate setting with a HID descriptor);
        malformed HID descriptors are skipped (a strict parse has already rejected them).
        """
        found: dict[int, int] = {}
        for alt in self.alt_settings:
            if alt.b_interface_number in found:
                continue
            try:
                hid = alt.hid_descriptor()
            except DescriptorError:
                continue
            if hid is not None and hid.report_length is not None:
                found[alt.b_interface_number] = hid.report_length
        return list(found.items())

    def string_indexes(self) -> set[int]:
        """Every non-zero string index this configuration refers to (see ``_string_refs``)."""
        from usbip_gadget.usb._string_refs import configuration_string_indexes

        return configuration_string_indexes(self)

    def pack(self) -> bytes:
        """The whole configuration; ``LocalProtocolError`` if it exceeds 64 KiB."""
        body = _pack_all(self.extra) + b"".join(item.pack() for item in self.body)
        total = CONFIG_LAYOUT.size + len(body)
        if total > 0xFFFF:
            raise LocalProtocolError(f"configuration is {total} bytes, wTotalLength cannot hold it")
        check_u8("bNumInterfaces", self.b_num_interfaces)
        head = CONFIG_LAYOUT.pack(
            CONFIG_LAYOUT.size,
            DescriptorType.CONFIGURATION,
            total,
            self.b_num_interfaces,
            self.b_configuration_value,
            self.i_configuration,
            self.bm_attributes,
            self.b_max_power,
        )
        return head + body
