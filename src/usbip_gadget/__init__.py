"""usbip-gadget: a userspace USB/IP client that replays a remote USB device as a USB gadget."""

from usbip_gadget._errors import (
    LocalProtocolError,
    RemoteProtocolError,
    TransportError,
    UsbipGadgetError,
)

__version__ = "0.1.0"

__all__ = [
    "LocalProtocolError",
    "RemoteProtocolError",
    "TransportError",
    "UsbipGadgetError",
    "__version__",
]
