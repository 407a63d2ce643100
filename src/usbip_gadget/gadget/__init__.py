"""The device side: configfs gadgets, FunctionFS descriptors and events, number remapping."""

from usbip_gadget._errors import EndpointsExhausted, FunctionFsUnsupported
from usbip_gadget.gadget._backend import (
    EndpointShutdown,
    GadgetBackend,
    GadgetEndpoint,
    PacketReader,
    QueuedWrite,
    one_read_at_a_time,
    write_on_wait,
)
from usbip_gadget.gadget._configfs import GADGET_ROOT, ConfigfsGadget, configfs_error
from usbip_gadget.gadget._fake import FakeEndpoint, FakeGadget
from usbip_gadget.gadget._fake_host import FakeHost, HostBabble, HostError, HostStall, HostTimeout
from usbip_gadget.gadget._ffs_blob import (
    CALLER_FLAGS,
    FfsFlag,
    build_descriptors,
    build_strings,
    check_expressible,
    endpoint_addresses,
    interface_numbers,
    string_indexes,
)
from usbip_gadget.gadget._ffs_events import FfsEvent, FfsEventType, pack_event, parse_events
from usbip_gadget.gadget._functionfs import (
    MOUNT_ROOT,
    FfsEndpoint,
    FunctionFsGadget,
    open_functionfs_gadget,
)
from usbip_gadget.gadget._remap import Remap
from usbip_gadget.gadget._udc import choose_udc, list_udcs

__all__ = [
    "CALLER_FLAGS",
    "GADGET_ROOT",
    "MOUNT_ROOT",
    "ConfigfsGadget",
    "EndpointShutdown",
    "EndpointsExhausted",
    "FakeEndpoint",
    "FakeGadget",
    "FakeHost",
    "FfsEndpoint",
    "FfsEvent",
    "FfsEventType",
    "FfsFlag",
    "FunctionFsGadget",
    "FunctionFsUnsupported",
    "GadgetBackend",
    "GadgetEndpoint",
    "HostBabble",
    "HostError",
    "HostStall",
    "HostTimeout",
    "PacketReader",
    "QueuedWrite",
    "Remap",
    "build_descriptors",
    "build_strings",
    "check_expressible",
    "choose_udc",
    "configfs_error",
    "endpoint_addresses",
    "interface_numbers",
    "list_udcs",
    "one_read_at_a_time",
    "open_functionfs_gadget",
    "pack_event",
    "parse_events",
    "string_indexes",
    "write_on_wait",
]
