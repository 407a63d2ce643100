"""Events read from a FunctionFS ep0 (``struct usb_functionfs_event``, functionfs.h).

Each event is 12 bytes: the 8-byte SETUP packet (meaningful only for SETUP events), the
event type, and 3 bytes of padding. One read of ep0 may return several events.
"""

from __future__ import annotations

import struct

from usbip_gadget._errors import GadgetError
from usbip_gadget.gadget._events import Ep0Event, Ep0EventType
from usbip_gadget.usb import SetupPacket

EVENT_SIZE = 12
_EVENT = struct.Struct("<8sB3x")


def parse_events(data: bytes) -> list[Ep0Event]:
    """Decode whole events; ``GadgetError`` on a partial event or an unknown type."""
    if len(data) % EVENT_SIZE:
        raise GadgetError(
            f"ep0 read of {len(data)} bytes is not a whole number of {EVENT_SIZE}-byte events"
        )
    return [_parse_one(data[at : at + EVENT_SIZE]) for at in range(0, len(data), EVENT_SIZE)]


def _parse_one(chunk: bytes) -> Ep0Event:
    setup_bytes, code = _EVENT.unpack(chunk)
    try:
        kind = Ep0EventType(code)
    except ValueError:
        raise GadgetError(f"unknown FunctionFS event type {code}") from None
    if kind != Ep0EventType.SETUP:
        return Ep0Event(kind)
    return Ep0Event(kind, SetupPacket.parse(setup_bytes))


def pack_event(event: Ep0Event) -> bytes:
    """The 12 bytes the kernel would deliver for ``event`` (for fakes and tests)."""
    setup = event.setup.pack() if event.setup is not None else bytes(8)
    return _EVENT.pack(setup, event.type)
