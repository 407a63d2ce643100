"""Events read from a FunctionFS ep0 (``struct usb_functionfs_event``, functionfs.h).

Each event is 12 bytes: the 8-byte SETUP packet (meaningful only for SETUP events), the
event type, and 3 bytes of padding. One read of ep0 may return several events.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from usbip_gadget._errors import GadgetError
from usbip_gadget.usb import SetupPacket

EVENT_SIZE = 12
_EVENT = struct.Struct("<8sB3x")


class FfsEventType(IntEnum):
    """``enum usb_functionfs_event_type`` (include/uapi/linux/usb/functionfs.h)."""

    BIND = 0
    UNBIND = 1
    ENABLE = 2
    DISABLE = 3
    SETUP = 4
    SUSPEND = 5
    RESUME = 6


@dataclass(frozen=True, slots=True)
class FfsEvent:
    """One ep0 event; ``setup`` is the request of a SETUP event and None otherwise."""

    type: FfsEventType
    setup: SetupPacket | None = None


def parse_events(data: bytes) -> list[FfsEvent]:
    """Decode whole events; ``GadgetError`` on a partial event or an unknown type."""
    if len(data) % EVENT_SIZE:
        raise GadgetError(
            f"ep0 read of {len(data)} bytes is not a whole number of {EVENT_SIZE}-byte events"
        )
    return [_parse_one(data[at : at + EVENT_SIZE]) for at in range(0, len(data), EVENT_SIZE)]


def _parse_one(chunk: bytes) -> FfsEvent:
    setup_bytes, code = _EVENT.unpack(chunk)
    try:
        kind = FfsEventType(code)
    except ValueError:
        raise GadgetError(f"unknown FunctionFS event type {code}") from None
    if kind != FfsEventType.SETUP:
        return FfsEvent(kind)
    return FfsEvent(kind, SetupPacket.parse(setup_bytes))


def pack_event(event: FfsEvent) -> bytes:
    """The 12 bytes the kernel would deliver for ``event`` (for fakes and tests)."""
    setup = event.setup.pack() if event.setup is not None else bytes(8)
    return _EVENT.pack(setup, event.type)
