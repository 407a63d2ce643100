"""Target: the usbredir codec in each role, fed a peer's real traffic (its hello, then
random packets that the peer's own rules let it send, under random capabilities) in random
fragments: as it is, every packet must come out unchanged; mutated, spliced or replaced by
random bytes, only our protocol errors may escape."""

from __future__ import annotations

import random
from collections.abc import Callable

from tools.fuzz._harness import Invariant, Target
from tools.fuzz._mutate import edge_u32, fragments, mutate, splice

from usbip_gadget import LocalProtocolError, RemoteProtocolError
from usbip_gadget.protocol import NEED_DATA
from usbip_gadget.usbredir import (
    ENDPOINTS,
    BulkPacket,
    Cap,
    ConfigurationStatus,
    Connection,
    ControlPacket,
    DeviceConnect,
    EndpointEntry,
    EpInfo,
    Event,
    Forms,
    InterfaceEntry,
    InterfaceInfo,
    InterruptPacket,
    InterruptReceivingStatus,
    IsoPacket,
    Packet,
    Reset,
    Role,
    SetAltSetting,
    SetConfiguration,
    StartInterruptReceiving,
)

PROTOCOL_ERRORS = (RemoteProtocolError, LocalProtocolError)


def _caps(rng: random.Random) -> frozenset[int]:
    return frozenset(c for c in Cap if rng.random() < 0.7)


def _data(rng: random.Random, sender: Role, endpoint: int, length: int) -> tuple[int, bytes]:
    if bool(endpoint & 0x80) == (sender is Role.HOST):
        data = rng.randbytes(length)
        return len(data), data
    return length, b""


def _packet(rng: random.Random, sender: Role, forms: Forms) -> Packet:
    """A packet ``sender`` may send under ``forms`` (with only what those forms carry); a
    few are refused by the sender's rules and skipped."""
    u8, u16 = rng.randrange(256), rng.randrange(1 << 16)
    pick = rng.randrange(6)
    if pick == 0:
        endpoint = rng.choice((0x00, 0x80))
        length, data = _data(rng, sender, endpoint, rng.randrange(300))
        return ControlPacket(endpoint, u8, u8, 0, u16, u16, length, data, id=edge_u32(rng))
    if pick == 1:
        endpoint = rng.randrange(256)
        length, data = _data(rng, sender, endpoint, rng.choice((0, 1, 512, 4096, 70000)))
        return BulkPacket(endpoint, 0, length, rng.randrange(3), data, id=edge_u32(rng))
    if pick == 2:
        endpoint = rng.randrange(256)
        length, data = _data(rng, sender, endpoint, rng.randrange(64))
        kind = rng.choice((IsoPacket, InterruptPacket))
        return kind(endpoint, 0, length, data, id=edge_u32(rng))
    if sender is Role.GUEST:
        return rng.choice((
            Reset(), SetConfiguration(u8, id=edge_u32(rng)), SetAltSetting(u8, u8),
            StartInterruptReceiving(0x80 | u8),
        ))  # fmt: skip
    size = u16 if forms.ep_info_size() >= 160 else 0
    entries = tuple(EndpointEntry(rng.randrange(4), u8, u8, size) for _ in range(ENDPOINTS))
    interfaces = tuple(InterfaceEntry(u8, u8, u8, u8) for _ in range(rng.randrange(33)))
    bcd = u16 if forms.both(Cap.CONNECT_DEVICE_VERSION) else None
    return rng.choice((
        DeviceConnect(2, 0, 0, 0, u16, u16, bcd), EpInfo(entries), InterfaceInfo(interfaces),
        ConfigurationStatus(0, u8), InterruptReceivingStatus(0, 0x80 | u8),
    ))  # fmt: skip


def _drain(conn: Connection) -> list[Event]:
    events: list[Event] = []
    for _ in range(64):
        event = conn.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)
    return events


def _case(receiver_role: Role) -> Callable[[random.Random], None]:
    sender_role = Role.GUEST if receiver_role is Role.HOST else Role.HOST

    def case(rng: random.Random) -> None:
        receiver = Connection(receiver_role, caps=_caps(rng))
        sender = Connection(sender_role, caps=_caps(rng))
        wire = [sender.hello()]
        sender.receive_data(receiver.hello())
        _drain(sender)
        sent: list[Packet] = []
        for _ in range(rng.randrange(1, 6)):
            packet = _packet(rng, sender_role, sender.forms)
            try:
                wire.append(sender.send(packet))
            except LocalProtocolError:
                continue
            sent.append(packet)
        stream = b"".join(wire)
        mode = rng.random()
        if mode >= 0.4:
            stream = mutate(rng, stream) if mode < 0.7 else (
                splice(rng, stream, rng.randbytes(rng.randrange(200))) if mode < 0.85
                else stream[: rng.randrange(len(stream))] + rng.randbytes(rng.randrange(300))
            )  # fmt: skip
        events: list[Event] = []
        try:
            for chunk in fragments(rng, stream):
                receiver.receive_data(chunk)
                events += _drain(receiver)
        except PROTOCOL_ERRORS as exc:
            if mode < 0.4:  # a valid stream must never be refused
                raise Invariant(f"a valid stream refused: {exc}") from None
            raise
        if mode < 0.4 and events[1:] != sent:
            raise Invariant(f"sent {len(sent)} packets, {len(events) - 1} came out or differ")

    return case


_HOST_CASE, _GUEST_CASE = _case(Role.HOST), _case(Role.GUEST)


def host_case(rng: random.Random) -> None:
    """The usb-host's connection receiving a usb-guest's traffic (module level: picklable)."""
    _HOST_CASE(rng)


def guest_case(rng: random.Random) -> None:
    _GUEST_CASE(rng)


TARGETS = [
    Target("usbredir-host", host_case, PROTOCOL_ERRORS, weight=0.05),
    Target("usbredir-guest", guest_case, PROTOCOL_ERRORS, weight=0.05),
]
