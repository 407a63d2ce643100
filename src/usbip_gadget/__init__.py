"""usbip-gadget: a userspace USB/IP client that replays a remote USB device as a USB gadget.

Every error the package raises on purpose is importable from here; all derive from
``UsbipGadgetError``.
"""

from usbip_gadget._errors import (
    AmbiguousMatch,
    DescriptorError,
    DeviceGone,
    DeviceRefused,
    EndpointsExhausted,
    EndpointShutdown,
    ExportError,
    FunctionFsUnsupported,
    GadgetError,
    GadgetFsUnsupported,
    ImportRefused,
    LocalProtocolError,
    NoBackend,
    NoMatchingDevice,
    Overflow,
    ProtocolError,
    RemoteProtocolError,
    ServiceError,
    SnapshotError,
    Stall,
    TemplateError,
    TransferError,
    TransportError,
    Unlinked,
    UsbipGadgetError,
    UsbipTimeout,
)

__version__ = "0.1.0"

__all__ = [
    "AmbiguousMatch",
    "DescriptorError",
    "DeviceGone",
    "DeviceRefused",
    "EndpointShutdown",
    "EndpointsExhausted",
    "ExportError",
    "FunctionFsUnsupported",
    "GadgetError",
    "GadgetFsUnsupported",
    "ImportRefused",
    "LocalProtocolError",
    "NoBackend",
    "NoMatchingDevice",
    "Overflow",
    "ProtocolError",
    "RemoteProtocolError",
    "ServiceError",
    "SnapshotError",
    "Stall",
    "TemplateError",
    "TransferError",
    "TransportError",
    "Unlinked",
    "UsbipGadgetError",
    "UsbipTimeout",
    "__version__",
]
