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
The ``build_*`` functions make one tree item from its head descriptor and the tokens after
it (see ``_tokens``); ``_config_parse`` assembles a whole configuration from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from usbip_gadget._errors import DescriptorError, LocalProtocolError
from usbip_gadget.usb._common import check_u8
from usbip_gadget.usb._device import DeviceDescriptor
from usbip_gadget.usb._enums import ClassCode, DescriptorType, TransferType
from usbip_gadget.usb._fields import Layout
from usbip_gadget.usb._hid import HidDescriptor
from usbip_gadget.usb._layouts import (
    AUDIO_ENDPOINT,
    CONFIGURATION,
    ENDPOINT,
    INTERFACE,
    INTERFACE_ASSOCIATION,
)
from usbip_gadget.usb._raw import RawDescriptor, pack_all
from usbip_gadget.usb._string_refs import class_specific_string_indexes
from usbip_gadget.usb._tokens import Token, raws, runs, single


@dataclass(frozen=True, slots=True)
class EndpointDescriptor:
    """An endpoint descriptor (USB 2.0 §9.6.6, Table 9-13) and the descriptors after it.

    Fields: bEndpointAddress, bmAttributes, wMaxPacketSize, bInterval; bRefresh and
    bSynchAddress are the two extra bytes of a 9-byte audio endpoint (UAC1 §4.6.1.1), both
    None for the standard 7-byte form. ``LAYOUT`` and ``AUDIO_LAYOUT`` are the two forms'
    field tables.
    """

    b_endpoint_address: int
    bm_attributes: int
    w_max_packet_size: int
    b_interval: int
    b_refresh: int | None = None
    b_synch_address: int | None = None
    extra: tuple[RawDescriptor, ...] = ()

    LAYOUT: ClassVar[Layout] = ENDPOINT
    AUDIO_LAYOUT: ClassVar[Layout] = AUDIO_ENDPOINT

    def __post_init__(self) -> None:
        ENDPOINT.check(self)
        if (self.b_refresh is None) != (self.b_synch_address is None):
            raise LocalProtocolError("bRefresh and bSynchAddress come together or not at all")
        if self.b_refresh is not None:
            AUDIO_ENDPOINT.check(self)

    @property
    def b_length(self) -> int:
        """7, or 9 for the audio form."""
        return ENDPOINT.size if self.b_refresh is None else AUDIO_ENDPOINT.size

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
        layout = ENDPOINT if self.b_refresh is None else AUDIO_ENDPOINT
        return layout.pack(self) + pack_all(self.extra)

    @classmethod
    def parse(cls, data: bytes) -> EndpointDescriptor:
        """Decode an endpoint descriptor and the descriptors after it (strict)."""
        head, rest = single(data, DescriptorType.ENDPOINT)
        return build_endpoint(head, rest, lenient=False)


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

    LAYOUT: ClassVar[Layout] = INTERFACE

    def __post_init__(self) -> None:
        INTERFACE.check(self)
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
        if self.b_interface_class != ClassCode.HID:
            return None
        candidates = self.extra + tuple(raw for ep in self.endpoints for raw in ep.extra)
        for raw in candidates:
            if raw.b_descriptor_type == DescriptorType.HID:
                return HidDescriptor.parse(raw.pack())
        return None

    def pack(self) -> bytes:
        """This interface descriptor, its extra descriptors, then its endpoints."""
        head = INTERFACE.pack(self, bNumEndpoints=len(self.endpoints))
        return head + pack_all(self.extra) + b"".join(ep.pack() for ep in self.endpoints)

    @classmethod
    def parse(cls, data: bytes) -> InterfaceDescriptor:
        """Decode an interface descriptor and everything after it (strict)."""
        head, rest = single(data, DescriptorType.INTERFACE)
        return build_interface(head, rest, lenient=False)


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

    LAYOUT: ClassVar[Layout] = INTERFACE_ASSOCIATION

    def __post_init__(self) -> None:
        INTERFACE_ASSOCIATION.check(self)

    def pack(self) -> bytes:
        """This IAD followed by its extra descriptors."""
        return INTERFACE_ASSOCIATION.pack(self) + pack_all(self.extra)


@dataclass(frozen=True, slots=True)
class Configuration:
    """A configuration descriptor (USB 2.0 §9.6.3, Table 9-10) and everything it contains.

    Fields: bConfigurationValue, iConfiguration, bmAttributes, bMaxPower (in 2 mA units, 8 mA
    at SuperSpeed). wTotalLength and bNumInterfaces are computed; see the module docstring
    for ``extra`` and ``body``. ``LAYOUT`` is the table of the 9-byte header.
    """

    b_configuration_value: int
    i_configuration: int = 0
    bm_attributes: int = 0x80
    b_max_power: int = 50
    extra: tuple[RawDescriptor, ...] = ()
    body: tuple[InterfaceAssociation | InterfaceDescriptor, ...] = ()

    LAYOUT: ClassVar[Layout] = CONFIGURATION

    def __post_init__(self) -> None:
        CONFIGURATION.check(self)

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
        found = {self.i_configuration}
        found.update(iad.i_function for iad in self.associations)
        for alt in self.alt_settings:
            found.add(alt.i_interface)
            function = (alt.b_interface_class, alt.b_interface_sub_class, alt.b_interface_protocol)
            found |= class_specific_string_indexes(function, alt.extra)
        return found - {0}

    def pack(self) -> bytes:
        """The whole configuration; ``LocalProtocolError`` if it exceeds 64 KiB."""
        body = pack_all(self.extra) + b"".join(item.pack() for item in self.body)
        total = CONFIGURATION.size + len(body)
        if total > 0xFFFF:
            raise LocalProtocolError(f"configuration is {total} bytes, wTotalLength cannot hold it")
        count = self.b_num_interfaces
        check_u8("bNumInterfaces", count)
        return CONFIGURATION.pack(self, wTotalLength=total, bNumInterfaces=count) + body


def build_endpoint(head: bytes, rest: list[Token], *, lenient: bool) -> EndpointDescriptor:
    """The endpoint whose descriptor is ``head`` (7 or 9 bytes), ``rest`` its extra ones."""
    layout = AUDIO_ENDPOINT if len(head) == AUDIO_ENDPOINT.size else ENDPOINT
    address = ENDPOINT.unpack(head)["bEndpointAddress"]
    extra = raws(rest, f"after endpoint {address:#04x}", lenient=lenient)
    return EndpointDescriptor(**layout.arguments(head), extra=extra)


def build_interface(head: bytes, rest: list[Token], *, lenient: bool) -> InterfaceDescriptor:
    """The alternate setting whose descriptor is ``head``, from the tokens up to the next one.

    Strict mode checks bNumEndpoints and that a HID descriptor is well formed.
    """
    fields = INTERFACE.unpack(head)
    number, count = fields["bInterfaceNumber"], fields["bNumEndpoints"]
    leading, found = runs(rest, {DescriptorType.ENDPOINT})
    endpoints = tuple(build_endpoint(ep[1], more, lenient=lenient) for ep, more in found)
    if count != len(endpoints) and not lenient:
        raise DescriptorError(
            f"interface {number} alt {fields['bAlternateSetting']}: bNumEndpoints is {count}"
            f" but {len(endpoints)} endpoint descriptors follow"
        )
    extra = raws(leading, f"in interface {number}", lenient=lenient)
    interface = InterfaceDescriptor(**INTERFACE.arguments(head), endpoints=endpoints, extra=extra)
    if not lenient:
        interface.hid_descriptor()  # a malformed HID descriptor raises here
    return interface


def build_association(head: bytes, rest: list[Token], *, lenient: bool) -> InterfaceAssociation:
    """The IAD whose descriptor is ``head``, ``rest`` the raw descriptors after it."""
    extra = raws(rest, "after an interface association", lenient=lenient)
    return InterfaceAssociation(**INTERFACE_ASSOCIATION.arguments(head), extra=extra)


def referenced_string_indexes(
    device: DeviceDescriptor, configurations: Sequence[Configuration]
) -> list[int]:
    """Sorted, unique, non-zero string indexes of the device and all its configurations."""
    found: set[int] = {device.i_manufacturer, device.i_product, device.i_serial_number}
    for config in configurations:
        found |= config.string_indexes()
    return sorted(found - {0})
