"""The GadgetFS backend: descriptors served as written, one whole controller (inode.c).

What GadgetFS shows the host (``_layout``), which controller endpoint file carries which
remote endpoint (``_endpoints``), ep0 as a state machine without I/O (``_ep0``, with its
events, actions and state in ``_ep0_*``), the plugged gadget that performs its system calls
(``_gadget``) and plugging it in and out (``_plug``). May import the standard library,
trio, ``usbip_gadget._errors``, ``_groups``, ``usb`` and the shared modules of
``usbip_gadget.gadget`` (never the package itself, ``functionfs`` or anything above the
gadget layer).
"""

from usbip_gadget.gadget.gadgetfs._endpoints import (
    KNOWN_ENDPOINT_FILES,
    NO_ISOCHRONOUS,
    ControllerEndpoint,
    EndpointSlot,
    map_endpoints,
    remote_endpoints,
    same_endpoint_addresses,
)
from usbip_gadget.gadget.gadgetfs._gadget import GadgetFsGadget, Syscalls
from usbip_gadget.gadget.gadgetfs._layout import (
    CONTROL_LIMIT,
    GadgetFsLayout,
    gadgetfs_layout,
    gadgetfs_reasons,
)
from usbip_gadget.gadget.gadgetfs._plug import open_gadgetfs_gadget

__all__ = [
    "CONTROL_LIMIT",
    "KNOWN_ENDPOINT_FILES",
    "NO_ISOCHRONOUS",
    "ControllerEndpoint",
    "EndpointSlot",
    "GadgetFsGadget",
    "GadgetFsLayout",
    "Syscalls",
    "gadgetfs_layout",
    "gadgetfs_reasons",
    "map_endpoints",
    "open_gadgetfs_gadget",
    "remote_endpoints",
    "same_endpoint_addresses",
]
