"""The GadgetFS backend: descriptors served as written, one whole controller (inode.c).

What GadgetFS shows the host (``_layout``), which controller endpoint file carries which
remote endpoint (``_endpoints``), and the plugged gadget. May import the standard library,
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
from usbip_gadget.gadget.gadgetfs._gadget import GadgetFsGadget, open_gadgetfs_gadget
from usbip_gadget.gadget.gadgetfs._layout import (
    CONTROL_LIMIT,
    GadgetFsLayout,
    gadgetfs_layout,
    gadgetfs_reasons,
)

__all__ = [
    "CONTROL_LIMIT",
    "KNOWN_ENDPOINT_FILES",
    "NO_ISOCHRONOUS",
    "ControllerEndpoint",
    "EndpointSlot",
    "GadgetFsGadget",
    "GadgetFsLayout",
    "gadgetfs_layout",
    "gadgetfs_reasons",
    "map_endpoints",
    "open_gadgetfs_gadget",
    "remote_endpoints",
    "same_endpoint_addresses",
]
