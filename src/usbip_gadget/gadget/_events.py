"""The ep0 events every backend reports: the host's requests and the gadget's state changes.

The types and their numbers are FunctionFS's (``enum usb_functionfs_event_type``); GadgetFS
events are translated into them, so the bridge sees one kind of event whatever the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from usbip_gadget.usb import SetupPacket


class Ep0EventType(IntEnum):
    """``enum usb_functionfs_event_type`` (include/uapi/linux/usb/functionfs.h)."""

    BIND = 0
    UNBIND = 1
    ENABLE = 2
    DISABLE = 3
    SETUP = 4
    SUSPEND = 5
    RESUME = 6


@dataclass(frozen=True, slots=True)
class Ep0Event:
    """One ep0 event; ``setup`` is the request of a SETUP event and None otherwise."""

    type: Ep0EventType
    setup: SetupPacket | None = None
