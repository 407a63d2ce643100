"""The usbredir codec: every packet round-trips under every combination of capabilities, fed
whole or one byte at a time; a real peer's hello parses; hostile input is one
RemoteProtocolError, found before anything is built; random bytes raise nothing else."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.usbredir.strategies import caps, packets
from usbip_gadget import LocalProtocolError, RemoteProtocolError
from usbip_gadget.protocol import CLOSED, NEED_DATA
from usbip_gadget.usbredir import (
    ALL_CAPS,
    MAX_PACKET_LENGTH,
    BulkPacket,
    Cap,
    Connection,
    ControlPacket,
    DeviceConnect,
    DeviceDisconnect,
    EndpointEntry,
    EpInfo,
    Event,
    FilterFilter,
    Hello,
    InterruptPacket,
    IsoPacket,
    Reset,
    Role,
    SetConfiguration,
    StartInterruptReceiving,
)

REAL_HELLO = (  # usbredirect 0.13 (usbredirhost): "usbredir 0.13.0", capability word 0xff
    struct.pack("<III", 0, 68, 0) + b"usbredir 0.13.0".ljust(64, b"\0") + struct.pack("<I", 0xFF)
)


def _feed(conn: Connection, wire: bytes, trickle: bool) -> list[Event]:
    events: list[Event] = []
    chunks = [wire[i : i + 1] for i in range(len(wire))] if trickle else [wire]
    for chunk in filter(None, chunks):  # b"" would be the end of the stream
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
    return events


def _pair(
    host_caps: frozenset[int] = ALL_CAPS, guest_caps: frozenset[int] = ALL_CAPS
) -> tuple[Connection, Connection]:
    host, guest = Connection(Role.HOST, caps=host_caps), Connection(Role.GUEST, caps=guest_caps)
    assert _feed(host, guest.hello(), False) == [Hello("usbip-gadget", guest_caps)]
    assert _feed(guest, host.hello(), False) == [Hello("usbip-gadget", host_caps)]
    return host, guest


@settings(max_examples=400)
@given(st.data(), caps, caps, st.sampled_from(Role), st.booleans())
def test_every_packet_round_trips(
    data: st.DataObject, host_caps: frozenset[int], guest_caps: frozenset[int], sender: Role,
    trickle: bool,
) -> None:  # fmt: skip
    host, guest = _pair(host_caps, guest_caps)
    source, sink = (host, guest) if sender is Role.HOST else (guest, host)
    packet = data.draw(packets(sender, source.forms))
    assert _feed(sink, source.send(packet), trickle) == [packet]


def test_the_header_grows_to_64_bit_ids_only_when_both_have_them() -> None:
    _host, guest = _pair()
    assert len(guest.send(Reset(id=2**40))) == 16
    _host, guest = _pair(guest_caps=ALL_CAPS - {Cap.IDS_64BIT})
    assert len(guest.send(Reset(id=7))) == 12
    with pytest.raises(LocalProtocolError, match="does not fit"):
        guest.send(Reset(id=2**40))


def test_a_real_peers_hello_and_the_short_forms() -> None:
    guest = Connection(Role.GUEST, caps=frozenset({Cap.FILTER}))
    guest.hello()
    assert _feed(guest, REAL_HELLO, True) == [Hello("usbredir 0.13.0", frozenset(Cap))]
    assert guest.peer_version == "usbredir 0.13.0"
    # Only the filter is shared: 12-byte headers, 8-byte device_connect, 96-byte ep_info.
    connect = struct.pack("<III", 1, 8, 0) + struct.pack("<BBBBHH", 2, 0, 0, 0, 0x1D6B, 0x104)
    assert _feed(guest, connect, False) == [DeviceConnect(2, 0, 0, 0, 0x1D6B, 0x104)]
    ep_info = struct.pack("<III", 5, 96, 0) + bytes([0] + [255] * 15 + [0] + [255] * 15) * 3
    (parsed,) = _feed(guest, ep_info, False)
    assert isinstance(parsed, EpInfo)
    assert set(parsed.by_address()) == {0x00, 0x80}


def test_our_hello_is_what_usbredirparser_reads() -> None:
    wire = Connection(Role.GUEST, caps=frozenset({Cap.IDS_64BIT, Cap.FILTER})).hello()
    assert wire == (
        struct.pack("<III", 0, 68, 0) + b"usbip-gadget".ljust(64, b"\0") + struct.pack("<I", 0x24)
    )


def _ready(role: Role = Role.GUEST, peer_caps: int = 0xFF) -> Connection:
    """A connection of ``role`` past both hellos (the peer announced ``peer_caps``)."""
    conn = Connection(role)
    conn.hello()
    hello = struct.pack("<III", 0, 68, 0) + bytes(64) + struct.pack("<I", peer_caps)
    _feed(conn, hello, False)
    return conn


def _header(kind: int, length: int, packet_id: int = 0) -> bytes:
    return struct.pack("<IIQ", kind, length, packet_id)


@pytest.mark.parametrize(
    ("role", "wire", "error"),
    [
        (Role.GUEST, _header(50, 0), "unknown packet type 50"),
        (Role.GUEST, _header(3, 0), "reset sent by the usb-host"),
        (Role.HOST, _header(1, 10) + bytes(10), "device_connect sent by the usb-guest"),
        (Role.GUEST, _header(101, MAX_PACKET_LENGTH + 1), "over 134218752"),
        (Role.GUEST, _header(2, 4) + bytes(4), "device_disconnect: length 4 for a 0-byte"),
        (Role.GUEST, _header(8, 1) + bytes(1), "configuration_status: length 1 for a 2-byte"),
        (Role.HOST, _header(100, 12) + struct.pack("<BBBBHHH", 0x80, 6, 0x80, 0, 0x100, 0, 2)
         + b"xx", "control_packet: data in the direction that carries none"),
        (Role.GUEST, _header(100, 11) + struct.pack("<BBBBHHH", 0x80, 6, 0x80, 0, 0, 0, 2)
         + b"x", "control_packet: 1 bytes of data for length 2"),
        (Role.GUEST, _header(100, 10) + struct.pack("<BBBBHHH", 0x81, 6, 0x80, 0, 0, 0, 0),
         "endpoint 0x81 is not 0x00 or 0x80"),
        (Role.HOST, _header(103, 4) + struct.pack("<BBH", 0x81, 0, 8),
         "interrupt IN is received, never asked for"),
        (Role.HOST, _header(102, 4) + struct.pack("<BBH", 0x81, 0, 0),
         "iso_packet in the direction that carries no data"),
        (Role.GUEST, _header(101, 10) + struct.pack("<BBHIH", 0x02, 0, 0, 0, 0x900),
         "over 134217728"),
        (Role.GUEST, _header(4, 132) + struct.pack("<I", 33) + bytes(128),
         "interface_count 33 over 32"),
        (Role.HOST, _header(15, 1) + b"\x01", "endpoint 0x01 is not IN"),
        (Role.GUEST, _header(23, 3) + b"0,1", "do not end in a NUL byte"),
        (Role.GUEST, _header(104, 10) + struct.pack("<IIBB", 0, 0, 0x02, 0), "0x02 is not IN"),
    ],
)  # fmt: skip
def test_hostile_packets_are_one_protocol_error(role: Role, wire: bytes, error: str) -> None:
    conn = _ready(role)
    with pytest.raises(RemoteProtocolError, match=error.replace("(", r"\(").replace(")", r"\)")):
        _feed(conn, wire, False)


def test_a_capability_the_receiver_lacks_refuses_its_packets() -> None:
    host = Connection(Role.HOST, caps=ALL_CAPS - {Cap.FILTER, Cap.DEVICE_DISCONNECT_ACK})
    host.hello()
    _feed(host, struct.pack("<III", 0, 68, 0) + bytes(64) + struct.pack("<I", 0xFF), False)
    with pytest.raises(RemoteProtocolError, match="filter_reject without the filter"):
        _feed(host, _header(22, 0), False)
    with pytest.raises(LocalProtocolError, match="filter_filter without the filter"):
        host.send(FilterFilter("-1,-1,-1,-1,1"))


def test_out_of_turn_and_broken_streams() -> None:
    conn = Connection(Role.GUEST)
    with pytest.raises(LocalProtocolError, match="before both hellos"):
        conn.send(Reset())
    conn.hello()
    with pytest.raises(RemoteProtocolError, match="device_disconnect before the peer's hello"):
        _feed(conn, struct.pack("<III", 2, 0, 0), False)
    conn = Connection(Role.GUEST)
    with pytest.raises(RemoteProtocolError, match="hello: 3 bytes of capabilities"):
        _feed(conn, struct.pack("<III", 0, 67, 0) + bytes(67), False)
    conn = _ready()
    conn.receive_data(_header(2, 0)[:5])
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="in the middle of a packet"):
        conn.next_event()
    conn = _ready()
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED


def test_a_second_hello_is_dropped() -> None:
    conn = _ready()
    again = _header(0, 68) + bytes(64) + struct.pack("<I", 0)
    assert _feed(conn, again + _header(2, 0), False) == [DeviceDisconnect()]
    assert conn.peer_caps == frozenset(Cap)  # the first hello's


@pytest.mark.parametrize(
    ("packet", "error"),
    [
        (ControlPacket(0x00, 9, 0, 0, 1, 0, 2, b"x"), "1 bytes of data for length 2"),
        (BulkPacket(0x02, 0, 70000, data=bytes(70000)), "needs 32bits_bulk_length"),
        (InterruptPacket(0x81, 0, 8), "interrupt IN is received"),
        (IsoPacket(0x81, 0, 0), "iso_packet in the direction that carries no data"),
        (StartInterruptReceiving(0x01), "endpoint 0x01 is not IN"),
        (BulkPacket(0x82, 0, -1), "length -1"),
        (SetConfiguration(256), "set_configuration: ubyte format requires"),
        (DeviceConnect(2, 0, 0, 0, 1, 2), "device_connect sent by the usb-guest"),
    ],
)
def test_a_packet_we_may_not_send_is_refused_before_any_byte(packet: object, error: str) -> None:
    guest = _ready(Role.GUEST, peer_caps=0xFF & ~(1 << Cap.BULK_LENGTH_32BIT))
    with pytest.raises(LocalProtocolError, match=error):
        guest.send(packet)  # type: ignore[arg-type]


@settings(max_examples=300)
@given(st.binary(max_size=400), st.sampled_from(Role), st.booleans())
def test_random_bytes_raise_only_protocol_errors(junk: bytes, role: Role, trickle: bool) -> None:
    conn = _ready(role)
    with contextlib.suppress(RemoteProtocolError):
        _feed(conn, junk, trickle)


def test_a_refused_packet_leaves_the_connection_able_to_take_more_bytes() -> None:
    conn = _ready()
    with pytest.raises(RemoteProtocolError) as info:
        _feed(conn, _header(4, 132) + struct.pack("<I", 33) + bytes(128), False)
    conn.receive_data(b"more")  # the error kept (with its traceback) pins no view
    assert info.value is not None


def test_fixed_bytes_of_the_data_packets() -> None:
    """Wire bytes written out from the protocol document, not from our own packer."""
    guest = _ready(Role.GUEST)
    control = ControlPacket(0x80, 6, 0x80, 0, 0x0100, 0, 18, id=9)
    assert guest.send(control) == _header(100, 10, 9) + bytes.fromhex("80 06 80 00 0001 0000 1200")
    bulk = BulkPacket(0x02, 0, 0x12345, 0, bytes(0x12345), id=10)
    assert guest.send(bulk)[:26] == _header(101, 10 + 0x12345, 10) + bytes.fromhex(
        "02 00 4523 00000000 0100"
    )
    host = _ready(Role.HOST)
    reply = _header(101, 10 + 3, 10) + bytes.fromhex("82 00 0300 00000000 0000") + b"abc"
    assert _feed(guest, reply, False) == [BulkPacket(0x82, 0, 3, 0, b"abc", id=10)]
    assert host.send(ControlPacket(0x80, 6, 0x80, 0, 0x100, 0, 2, b"\x12\x01", id=9)) == (
        _header(100, 12, 9) + bytes.fromhex("80 06 80 00 0001 0000 0200") + b"\x12\x01"
    )


def test_a_field_the_wire_cannot_hold_is_refused() -> None:
    host = _ready(Role.HOST)
    with pytest.raises(LocalProtocolError, match="ep_info: bytes must be in range"):
        host.send(EpInfo((EndpointEntry(type=300),) * 32))
