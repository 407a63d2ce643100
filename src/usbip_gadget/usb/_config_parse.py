"""Parsing configuration descriptors: strict for well-formed devices, lenient for short reads.

The bytes are split into descriptors, each standard structural descriptor (interface,
endpoint, IAD) is recognised by type and size, and the flat list is grouped into the tree of
``_config``: everything up to the next interface or IAD belongs to the item before it, and
inside an interface everything up to the next endpoint belongs to the descriptor before it.
"""

from __future__ import annotations

from usbip_gadget._errors import DescriptorError
from usbip_gadget.usb._config import (
    Configuration,
    InterfaceAssociation,
    InterfaceDescriptor,
    build_association,
    build_interface,
)
from usbip_gadget.usb._enums import DescriptorType
from usbip_gadget.usb._layouts import CONFIGURATION
from usbip_gadget.usb._raw import split_descriptors
from usbip_gadget.usb._tokens import Run, raws, runs, tokens


def config_total_length(header: bytes) -> int:
    """wTotalLength of a configuration, from (at least) its first 9 bytes.

    ``DescriptorError`` unless bLength is 9, bDescriptorType is CONFIGURATION and
    wTotalLength is at least 9.
    """
    if len(header) < CONFIGURATION.size:
        raise DescriptorError(f"configuration header: {len(header)} bytes, need 9")
    fields = CONFIGURATION.unpack(header)
    size, dtype = fields["bLength"], fields["bDescriptorType"]
    if size != CONFIGURATION.size or dtype != DescriptorType.CONFIGURATION:
        raise DescriptorError(
            f"configuration header: bLength {size}, bDescriptorType {dtype:#04x}; expected 9, 0x02"
        )
    total = fields["wTotalLength"]
    if total < CONFIGURATION.size:
        raise DescriptorError(f"configuration header: wTotalLength {total} is below 9")
    return total


def _body_item(run: Run, *, lenient: bool) -> InterfaceAssociation | InterfaceDescriptor:
    (kind, head), rest = run
    if kind == DescriptorType.INTERFACE_ASSOCIATION:
        return build_association(head, rest, lenient=lenient)
    return build_interface(head, rest, lenient=lenient)


def parse_configuration(data: bytes, *, lenient: bool = False) -> Configuration:
    """Decode a whole configuration (the wTotalLength bytes GET_DESCRIPTOR returned).

    Strict mode checks that wTotalLength equals ``len(data)``, every bLength (at least 2,
    inside the data, the standard size for interface/endpoint/IAD descriptors), that
    bNumInterfaces and each bNumEndpoints match, that endpoints only follow interfaces, and
    that HID descriptors are well formed. Lenient mode, for devices that returned less than
    wTotalLength or miscount, stops at the last whole descriptor, ignores the counts and keeps
    misplaced or missized standard descriptors as raw ones. Both raise ``DescriptorError`` on
    a bad 9-byte header.
    """
    total = config_total_length(data)
    if total != len(data) and not lenient:
        raise DescriptorError(f"configuration: wTotalLength is {total} but {len(data)} bytes")
    pieces = split_descriptors(data[:total], lenient=lenient)
    leading, found = runs(
        tokens(pieces[1:], lenient=lenient),
        {DescriptorType.INTERFACE, DescriptorType.INTERFACE_ASSOCIATION},
    )
    config = Configuration(
        **CONFIGURATION.arguments(data),
        extra=raws(leading, "before the first interface", lenient=lenient),
        body=tuple(_body_item(run, lenient=lenient) for run in found),
    )
    num_interfaces = CONFIGURATION.unpack(data)["bNumInterfaces"]
    if num_interfaces != config.b_num_interfaces and not lenient:
        raise DescriptorError(
            f"configuration: bNumInterfaces is {num_interfaces}"
            f" but {config.b_num_interfaces} interfaces follow"
        )
    return config
