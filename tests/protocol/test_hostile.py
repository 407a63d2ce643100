"""Hostile input: every violation is a RemoteProtocolError, checked before anything is used."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.protocol import strategies as s
from tests.protocol.helpers import feed, imported_pair, transfer
from usbip_gadget import RemoteProtocolError
from usbip_gadget.protocol import (
    CLOSED,
    NEED_DATA,
    CmdSubmit,
    CmdUnlink,
    Connection,
    DevlistRequest,
    Direction,
    ImportRequest,
    IsoPacket,
    RetSubmit,
    RetUnlink,
    Role,
)


def ret_header(seqnum: int, status: int, actual: int, npk: int = -1) -> bytes:
    return struct.pack(">IIIIIiiiii8x", 3, seqnum, 0, 0, 0, status, actual, 0, npk, 0)


def iso(offset: int, length: int, actual: int) -> bytes:
    return struct.pack(">IIIi", offset, length, actual, 0)


def host_with(*cmds: CmdSubmit) -> Connection:
    host, device = imported_pair()
    for cmd in cmds:
        transfer(host, device, cmd, trickle=False)
    return host


IN_64 = CmdSubmit(1, 0x10002, Direction.IN, 1, 64)
OUT_64 = CmdSubmit(2, 0x10002, Direction.OUT, 2, 64, data=bytes(64))
ISO_IN = CmdSubmit(3, 0x10002, Direction.IN, 3, 300, number_of_packets=3,
                   iso_packets=tuple(IsoPacket(100 * i, 100) for i in range(3)))  # fmt: skip


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (ret_header(1, 0, 65) + bytes(65), "actual_length 65 outside 0..64"),
        (ret_header(2, 0, -1), "actual_length -1"),
        (ret_header(9, 0, 0), "unknown or already answered seqnum 9"),
        (ret_header(1, 0, 0, npk=2), "ISO packets in reply to a non-ISO URB"),
        (ret_header(3, 0, 0, npk=4), "number_of_packets 4 outside 1..3"),
        (ret_header(3, 0, 0, npk=1025), "number_of_packets 1025"),
        (ret_header(3, 0, 10, npk=1) + bytes(10) + iso(250, 100, 10), "outside buffer"),
        (ret_header(3, 0, 10, npk=1) + bytes(10) + iso(0xFFFFFFFF, 2, 0), "outside buffer"),
        (ret_header(3, 0, 10, npk=1) + bytes(10) + iso(0, 100, 101), "outside buffer"),
        (ret_header(3, 0, 10, npk=1) + bytes(10) + iso(0, 100, 5), "do not add up"),
        (struct.pack(">IIIII28x", 7, 1, 0, 0, 0), "expected RET_SUBMIT or RET_UNLINK"),
        (struct.pack(">IIIII28x", 1, 1, 0, 0, 0), "expected RET_SUBMIT or RET_UNLINK"),
        (struct.pack(">IIIIIi24x", 4, 5, 0, 0, 0, 0), "RET_UNLINK for unknown seqnum 5"),
    ],
)
def test_host_rejects(wire: bytes, message: str) -> None:
    host = host_with(IN_64, OUT_64, ISO_IN)
    host.receive_data(wire)
    with pytest.raises(RemoteProtocolError, match=message):
        host.next_event()


def test_duplicate_reply_is_rejected() -> None:
    host = host_with(OUT_64)
    assert feed(host, ret_header(2, 0, 64), trickle=False) == [RetSubmit(2, 0, 64)]
    host.receive_data(ret_header(2, 0, 64))
    with pytest.raises(RemoteProtocolError, match="seqnum 2"):
        host.next_event()


def test_late_reply_after_successful_unlink_is_dropped() -> None:
    host, device = imported_pair()
    transfer(host, device, IN_64, trickle=False)
    transfer(host, device, CmdUnlink(10, 0x10002, 1), trickle=False)
    unlink_reply = struct.pack(">IIIIIi24x", 4, 10, 0, 0, 0, -104)
    late = ret_header(1, 0, 4) + b"abcd"
    next_ok = ret_header(11, 0, 0)
    transfer(host, device, CmdSubmit(11, 0x10002, Direction.OUT, 1, 0), trickle=False)
    events = feed(host, unlink_reply + late + next_ok, trickle=True)
    assert [type(e).__name__ for e in events] == ["RetUnlink", "RetSubmit"]
    assert events[1] == RetSubmit(11)


def test_devlist_with_absurd_count_fails_at_once() -> None:
    host = Connection(Role.HOST)
    host.send(DevlistRequest())
    host.receive_data(struct.pack(">HHII", 0x0111, 5, 0, 0xFFFFFFFF))
    with pytest.raises(RemoteProtocolError, match="claims 4294967295 devices"):
        host.next_event()


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (struct.pack(">HHI", 0x0106, 3, 0), "unsupported USB/IP version 0x0106"),
        (struct.pack(">HHI", 0x0111, 0x1234, 0), "unknown op code 0x1234"),
        (struct.pack(">HHI", 0x0111, 5, 0) + bytes(4), "unexpected DevlistReply"),
        (struct.pack(">HHI", 0x0111, 3, 0) + b"p" * 256 + bytes(56), "path is not NUL"),
        (struct.pack(">HHI", 0x0111, 3, 0) + bytes(256) + b"b" * 32 + bytes(24), "busid is not"),
        (struct.pack(">HHI", 0x0111, 3, 0) + b"\xff\0" + bytes(310), "not valid UTF-8"),
    ],
)
def test_import_reply_rejects(wire: bytes, message: str) -> None:
    host = Connection(Role.HOST)
    host.send(ImportRequest("1-1"))
    host.receive_data(wire)
    with pytest.raises(RemoteProtocolError, match=message):
        host.next_event()


def test_connection_closed_mid_message() -> None:
    host = Connection(Role.HOST)
    host.send(ImportRequest("1-1"))
    host.receive_data(struct.pack(">HHI", 0x0111, 3, 0) + bytes(100))
    assert host.next_event() is NEED_DATA
    host.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="in the middle of a message"):
        host.next_event()


def test_connection_closed_cleanly() -> None:
    host = host_with()
    host.receive_data(b"")
    assert host.next_event() is CLOSED


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ((1, 1, 0, 2, 1, 0, 8, 0, -1, 0), "direction 2"),
        ((1, 1, 0, 1, 16, 0, 8, 0, -1, 0), "endpoint number 16"),
        ((1, 1, 0, 0, 1, 0, 0x7FFFFFFF, 0, -1, 0), "transfer_buffer_length 2147483647"),
        ((1, 1, 0, 0, 1, 0, -5, 0, -1, 0), "transfer_buffer_length -5"),
        ((1, 1, 0, 1, 1, 0, 8, 0, 5000, 0), "number_of_packets 5000"),
    ],
)
def test_device_rejects_commands(fields: tuple[int, ...], message: str) -> None:
    _host, device = imported_pair()
    device.receive_data(struct.pack(">IIIIIIiiii8s", *fields, bytes(8)))
    with pytest.raises(RemoteProtocolError, match=message):
        device.next_event()


def test_device_rejects_duplicate_seqnum() -> None:
    host, device = imported_pair()
    cmd = CmdSubmit(5, 1, Direction.IN, 1, 8)
    transfer(host, device, cmd, trickle=False)
    device.receive_data(imported_pair()[0].send(cmd))
    with pytest.raises(RemoteProtocolError, match="already in flight"):
        device.next_event()


# ------------------------------------------------------------------ fuzz property


def _connections() -> list[Connection]:
    devlist_host = Connection(Role.HOST)
    devlist_host.send(DevlistRequest())
    import_host = Connection(Role.HOST)
    import_host.send(ImportRequest("1-1"))
    device = Connection(Role.DEVICE)
    return [devlist_host, import_host, host_with(IN_64, OUT_64, ISO_IN), imported_pair()[1], device]


def _drain(conn: Connection) -> None:
    for _ in range(10_000):
        if conn.next_event() in (NEED_DATA, CLOSED):
            return


@given(st.integers(0, 4), st.lists(st.binary(max_size=400), max_size=6), st.booleans())
def test_random_bytes_only_raise_remote_protocol_error(
    which: int, chunks: list[bytes], eof: bool
) -> None:
    conn = _connections()[which]
    try:
        for chunk in [*chunks, b""] if eof else chunks:
            conn.receive_data(chunk)
            _drain(conn)
    except RemoteProtocolError:
        pass


@given(st.data())
def test_mutated_valid_traffic_only_raises_remote_protocol_error(data: st.DataObject) -> None:
    host, device = imported_pair()
    cmd = data.draw(s.cmd_submits(seqnum=1))
    transfer(host, device, cmd, trickle=False)
    wire = bytearray(device.send(data.draw(s.ret_submit_for(cmd))))
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(wire) - 1))
        wire[pos] = data.draw(st.integers(0, 255))
    try:
        host.receive_data(bytes(wire))
        _drain(host)
    except RemoteProtocolError:
        pass


def test_device_side_forgets_unlinked_submits() -> None:
    host, device = imported_pair()
    for n in range(0, 200, 2):
        transfer(host, device, CmdSubmit(n + 1, 1, Direction.IN, 1, 8), trickle=False)
        transfer(host, device, CmdUnlink(n + 2, 1, n + 1), trickle=False)
        feed(host, device.send(RetUnlink(n + 2, -104)), trickle=False)
    assert device.state._inflight == set()
    assert host.state.pending == frozenset()
