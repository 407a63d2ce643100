"""Connection.bytes_wanted: how much more the next reply needs, a hint for receiving."""

from __future__ import annotations

import pytest

from tests.protocol.helpers import feed, imported_pair
from usbip_gadget.protocol import CmdSubmit, Connection, Direction, RetSubmit, Role

HEADER = 48


def test_before_the_urb_phase_any_byte_will_do() -> None:
    assert Connection(Role.HOST).bytes_wanted() == 1
    assert Connection(Role.DEVICE).bytes_wanted() == 1


def test_an_in_reply_wants_its_header_then_all_its_data() -> None:
    host, device = imported_pair()
    feed(device, host.send(CmdSubmit(1, 0x10002, Direction.IN, 1, 100_000)), trickle=False)
    reply = device.send(RetSubmit(1, actual_length=70_000, data=bytes(70_000)))
    assert host.bytes_wanted() == HEADER
    assert feed(host, reply[:20], trickle=False) == []
    assert host.bytes_wanted() == HEADER - 20
    assert feed(host, reply[20:1000], trickle=False) == []
    assert host.bytes_wanted() == HEADER + 70_000 - 1000
    assert len(feed(host, reply[1000:], trickle=False)) == 1
    assert host.bytes_wanted() == HEADER


@pytest.mark.parametrize("direction", [Direction.OUT, Direction.IN])
def test_a_reply_without_payload_wants_only_its_header(direction: Direction) -> None:
    host, device = imported_pair()
    data = bytes(512) if direction == Direction.OUT else b""
    feed(device, host.send(CmdSubmit(1, 0x10002, direction, 2, 512, data=data)), trickle=False)
    reply = device.send(RetSubmit(1, actual_length=0 if direction == Direction.IN else 512))
    feed(host, reply[: HEADER - 1], trickle=False)
    assert host.bytes_wanted() == 1


def test_a_reply_to_an_unknown_seqnum_wants_only_a_header() -> None:
    host, device = imported_pair()
    feed(device, host.send(CmdSubmit(1, 0x10002, Direction.IN, 1, 4096)), trickle=False)
    forged = bytearray(device.send(RetSubmit(1, actual_length=4096, data=bytes(4096))))
    forged[4:8] = (99).to_bytes(4, "big")  # a seqnum the host never used
    host.receive_data(bytes(forged[:HEADER]))
    assert host.bytes_wanted() == 1
