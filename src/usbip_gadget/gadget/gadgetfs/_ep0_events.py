"""Events read from a GadgetFS ep0 (``struct usb_gadgetfs_event``, gadgetfs.h).

Each event is 12 bytes: a union of the 8-byte SETUP packet and, for CONNECT, the bus speed,
then the event type as a 32-bit number. One read of ep0 returns up to five of them (the
kernel queues no more) and ends at the first SETUP.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from usbip_gadget._errors import GadgetError
from usbip_gadget.usb import SetupPacket

EVENT_SIZE = 12
EVENTS_READ = EVENT_SIZE * 5  # GadgetFS queues at most five events (N_EVENT)
_EVENT = struct.Struct("<8sI")  # union {setup; speed}, type


class GadgetFsEventType(IntEnum):
    """``enum usb_gadgetfs_event_type`` (include/uapi/linux/usb/gadgetfs.h)."""

    NOP = 0
    CONNECT = 1
    DISCONNECT = 2
    SETUP = 3
    SUSPEND = 4


@dataclass(frozen=True, slots=True)
class GadgetFsEvent:
    """One ep0 event; an OUT request's data (or its loss) travels with it once read.

    ``type`` is a ``GadgetFsEventType``, or a number the kernel never queues: an OUT
    request's data stage of a whole number of records, read where events were expected
    (see ``GadgetFsEp0``), parses as such. ``setup`` is the request of a SETUP event.
    """

    type: int
    setup: SetupPacket | None = None
    data: bytes | None = None
    lost: bool = False

    @property
    def w_length(self) -> int:
        """A SETUP event's wLength (0 for the others)."""
        return self.setup.w_length if self.setup is not None else 0

    @property
    def wants_data(self) -> bool:
        """An OUT request with a data stage whose data has been neither read nor lost."""
        setup = self.setup
        if setup is None or setup.is_in or not setup.w_length:
            return False
        return self.data is None and not self.lost

    @property
    def holds_ep0(self) -> bool:
        """A request that keeps ep0 in its SETUP state until it is answered (one whose
        data has been read, or lost, is over for ep0)."""
        return self.setup is not None and self.data is None and not self.lost


def parse_events(data: bytes) -> list[GadgetFsEvent]:
    """Decode whole events, unknown types kept as numbers; ``GadgetError`` on a partial one."""
    if len(data) % EVENT_SIZE:
        raise GadgetError(
            f"ep0 read of {len(data)} bytes is not a whole number of {EVENT_SIZE}-byte events"
        )
    return [_parse_one(data, at) for at in range(0, len(data), EVENT_SIZE)]


def _parse_one(data: bytes, at: int) -> GadgetFsEvent:
    union, code = _EVENT.unpack_from(data, at)
    if code != GadgetFsEventType.SETUP:
        return GadgetFsEvent(code)
    return GadgetFsEvent(code, SetupPacket.parse(union))


def pack_event(kind: int, setup: SetupPacket | None = None) -> bytes:
    """The 12 bytes the kernel would deliver (for models and tests; a CONNECT's speed is 0)."""
    return _EVENT.pack(setup.pack() if setup is not None else bytes(8), kind)


__all__ = [
    "EVENTS_READ",
    "EVENT_SIZE",
    "GadgetFsEvent",
    "GadgetFsEventType",
    "pack_event",
    "parse_events",
]
