"""USB descriptors and requests: parse and build them, snapshot a device, render it as text.

The room for what the USB specifications say about bytes: descriptors, SETUP packets, class
codes, what an endpoint's fields mean at each speed. Every fixed-layout descriptor has one
field table (``LAYOUT`` on its class: struct, range checks, byte offsets by spec name).

No I/O and no trio here: pure functions and frozen dataclasses. This package imports only the
standard library and ``usbip_gadget._errors``; every other room may import it. Malformed bytes
from a device raise ``DescriptorError`` (a ``RemoteProtocolError``); values we are asked to
encode that do not fit raise ``LocalProtocolError``; a malformed snapshot raises
``SnapshotError``.
"""

from usbip_gadget._errors import DescriptorError, SnapshotError
from usbip_gadget.usb._bos import (
    Bos,
    DeviceCapability,
    DeviceCapabilityType,
    bos_total_length,
    parse_bos,
)
from usbip_gadget.usb._config import (
    Configuration,
    EndpointDescriptor,
    InterfaceAssociation,
    InterfaceDescriptor,
    referenced_string_indexes,
)
from usbip_gadget.usb._config_parse import config_total_length, parse_configuration
from usbip_gadget.usb._device import DeviceDescriptor, DeviceQualifier
from usbip_gadget.usb._enums import (
    ClassCode,
    DescriptorType,
    FeatureSelector,
    Request,
    RequestType,
    Speed,
    TransferType,
)
from usbip_gadget.usb._fields import Layout
from usbip_gadget.usb._hid import HidDescriptor
from usbip_gadget.usb._raw import RawDescriptor, split_descriptors
from usbip_gadget.usb._render import class_name, describe_endpoint, render_tree
from usbip_gadget.usb._setup import SetupPacket
from usbip_gadget.usb._snapshot import DeviceSnapshot
from usbip_gadget.usb._speed import as_full_speed, as_high_speed, both_speeds, urb_interval
from usbip_gadget.usb._strings import (
    LANG_ID_US_ENGLISH,
    decode_lang_ids,
    decode_string,
    encode_lang_ids,
    encode_string,
)

__all__ = [
    "LANG_ID_US_ENGLISH",
    "Bos",
    "ClassCode",
    "Configuration",
    "DescriptorError",
    "DescriptorType",
    "DeviceCapability",
    "DeviceCapabilityType",
    "DeviceDescriptor",
    "DeviceQualifier",
    "DeviceSnapshot",
    "EndpointDescriptor",
    "FeatureSelector",
    "HidDescriptor",
    "InterfaceAssociation",
    "InterfaceDescriptor",
    "Layout",
    "RawDescriptor",
    "Request",
    "RequestType",
    "SetupPacket",
    "SnapshotError",
    "Speed",
    "TransferType",
    "as_full_speed",
    "as_high_speed",
    "bos_total_length",
    "both_speeds",
    "class_name",
    "config_total_length",
    "decode_lang_ids",
    "decode_string",
    "describe_endpoint",
    "encode_lang_ids",
    "encode_string",
    "parse_bos",
    "parse_configuration",
    "referenced_string_indexes",
    "render_tree",
    "split_descriptors",
    "urb_interval",
]
