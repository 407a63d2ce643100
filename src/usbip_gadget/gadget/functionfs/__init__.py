"""The FunctionFS backend: a configfs gadget with one ``ffs`` function (f_fs.c).

What FunctionFS can express, the descriptor and string blobs written to its ep0, its ep0
events, and the plugged gadget. May import the standard library, trio, ``usbip_gadget._errors``,
``_groups``, ``usb`` and the shared modules of ``usbip_gadget.gadget`` (never the package
itself, ``gadgetfs`` or anything above the gadget layer).
"""

from usbip_gadget.gadget.functionfs._blob import (
    CALLER_FLAGS,
    FfsFlag,
    build_descriptors,
    build_strings,
    check_expressible,
)
from usbip_gadget.gadget.functionfs._events import EVENT_SIZE, pack_event, parse_events
from usbip_gadget.gadget.functionfs._gadget import FunctionFsGadget, open_functionfs_gadget
from usbip_gadget.gadget.functionfs._plan import functionfs_differences

__all__ = [
    "CALLER_FLAGS",
    "EVENT_SIZE",
    "FfsFlag",
    "FunctionFsGadget",
    "build_descriptors",
    "build_strings",
    "check_expressible",
    "functionfs_differences",
    "open_functionfs_gadget",
    "pack_event",
    "parse_events",
]
