"""The usb-guest link: USB/IP commands in, the usbredir packets QEMU would send out; the
usb-host's packets in, the replies a USB/IP server would give out. A scripted usb-host
(a codec ``Connection`` in the host role) is the other end."""

from __future__ import annotations

import errno

import pytest

from usbip_gadget import LocalProtocolError
from usbip_gadget.protocol import (
    CLOSED,
    NEED_DATA,
    CmdSubmit,
    CmdUnlink,
    Direction,
    RetSubmit,
    RetUnlink,
    Sentinel,
    UnexportReply,
    UnexportRequest,
)
from usbip_gadget.usb import SetupPacket
from usbip_gadget.usbredir import (
    ALL_CAPS,
    INTERRUPT_BACKLOG,
    MAX_BULK_LENGTH,
    AltSettingStatus,
    BulkPacket,
    CancelDataPacket,
    Cap,
    ConfigurationStatus,
    Connection,
    ControlPacket,
    DeviceConnect,
    DeviceDisconnect,
    DeviceDisconnectAck,
    EndpointEntry,
    EndpointType,
    EpInfo,
    GuestLink,
    InterfaceEntry,
    InterfaceInfo,
    InterruptPacket,
    InterruptReceivingStatus,
    Packet,
    Role,
    SetAltSetting,
    SetConfiguration,
    Speed,
    StartInterruptReceiving,
    Status,
    endpoint_index,
)

BULK_IN, BULK_OUT, INT_IN, ISO_IN = 0x81, 0x02, 0x83, 0x84


def _ep_info(**types: tuple[int, int]) -> EpInfo:
    slots = [EndpointEntry()] * 32
    slots[0] = slots[16] = EndpointEntry(EndpointType.CONTROL, 0, 0, 64)
    for address, (kind, size) in ((int(k[2:], 16), v) for k, v in types.items()):
        slots[endpoint_index(address)] = EndpointEntry(kind, 1, 0, size)
    return EpInfo(tuple(slots))


ENDPOINTS = _ep_info(
    ep81=(EndpointType.BULK, 512), ep02=(EndpointType.BULK, 512),
    ep83=(EndpointType.INTERRUPT, 8), ep84=(EndpointType.ISO, 192),
)  # fmt: skip


class Host:
    """A scripted usb-host: what the guest link sends it, and what it sends back."""

    def __init__(self, link: GuestLink, caps: frozenset[int] = ALL_CAPS) -> None:
        self.link = link
        self.conn = Connection(Role.HOST, caps=caps)
        self.to_guest = self.conn.hello()
        self.conn.receive_data(link.hello())
        assert self.conn.next_event() is not NEED_DATA  # the guest's hello

    def say(self, *packets: Packet) -> None:
        data = self.to_guest + b"".join(self.conn.send(p) for p in packets)
        self.to_guest = b""
        self.link.receive_data(data)

    def heard(self, data: bytes) -> list[Packet]:
        self.conn.receive_data(data)
        out: list[Packet] = []
        while not isinstance(event := self.conn.next_event(), Sentinel):
            out.append(event)
        assert event is NEED_DATA
        return out

    def events(self) -> list[object]:
        out: list[object] = []
        while (event := self.link.next_event()) is not NEED_DATA:
            out.append(event)
            if event is CLOSED:
                break
        return out


def _connected(caps: frozenset[int] = ALL_CAPS) -> Host:
    host = Host(GuestLink(), caps)
    host.say(
        InterfaceInfo((InterfaceEntry(0, 8, 6, 0x50),)),
        ENDPOINTS,
        DeviceConnect(Speed.HIGH, 0, 0, 0, 0x1D6B, 0x0104, 0x0100),
    )
    assert host.events() == []
    return host


def _in(seq: int, ep: int, length: int) -> CmdSubmit:
    return CmdSubmit(seq, 0, Direction.IN, ep, length)


def test_the_device_record_comes_from_device_connect_and_interface_info() -> None:
    host = _connected()
    record = host.link.device_record("usbredir://h:1")
    assert (record.id_vendor, record.id_product, record.bcd_device) == (0x1D6B, 0x0104, 0x0100)
    assert (record.speed, record.b_num_interfaces, record.path) == (3, 1, "usbredir://h:1")


def test_no_record_before_device_connect() -> None:
    with pytest.raises(LocalProtocolError):
        GuestLink().device_record("x")


def test_a_control_in_request_is_a_control_packet_and_its_reply_a_ret_submit() -> None:
    host = _connected()
    setup = SetupPacket.get_descriptor(1, 0, 18)
    sent = host.heard(host.link.send(CmdSubmit(7, 0, Direction.IN, 0, 18, setup=setup.pack())))
    assert sent == [ControlPacket(0x80, 6, 0x80, 0, 0x0100, 0, 18, id=7)]
    host.say(ControlPacket(0x80, 6, 0x80, Status.SUCCESS, 0x0100, 0, 18, bytes(18), id=7))
    assert host.events() == [RetSubmit(7, 0, 18, bytes(18))]


def test_a_control_out_request_carries_its_data() -> None:
    host = _connected()
    setup = SetupPacket(0x21, 0x20, 0, 0, 7).pack()
    cmd = CmdSubmit(3, 0, Direction.OUT, 0, 7, setup=setup, data=b"1234567")
    assert host.heard(host.link.send(cmd)) == [
        ControlPacket(0x00, 0x20, 0x21, 0, 0, 0, 7, b"1234567", id=3)
    ]
    host.say(ControlPacket(0x00, 0x20, 0x21, Status.STALL, 0, 0, 0, id=3))
    assert host.events() == [RetSubmit(3, -errno.EPIPE, 0)]


def test_set_configuration_and_set_interface_become_their_usbredir_packets() -> None:
    host = _connected()
    config = SetupPacket.set_configuration(1).pack()
    sent = host.heard(host.link.send(CmdSubmit(4, 0, Direction.OUT, 0, 0, setup=config)))
    assert sent == [SetConfiguration(1, id=4)]
    alt = SetupPacket(0x01, 11, 2, 1, 0).pack()
    assert host.heard(host.link.send(CmdSubmit(5, 0, Direction.OUT, 0, 0, setup=alt))) == [
        SetAltSetting(1, 2, id=5)
    ]
    host.say(ConfigurationStatus(Status.SUCCESS, 1, id=4), ENDPOINTS)
    host.say(AltSettingStatus(Status.INVAL, 1, 255, id=5))
    assert host.events() == [RetSubmit(4), RetSubmit(5, -errno.EINVAL)]


def test_bulk_in_and_out() -> None:
    host = _connected()
    assert host.heard(host.link.send(_in(9, 1, 65536))) == [BulkPacket(BULK_IN, 0, 65536, id=9)]
    out = CmdSubmit(10, 0, Direction.OUT, 2, 3, data=b"abc")
    assert host.heard(host.link.send(out)) == [BulkPacket(BULK_OUT, 0, 3, data=b"abc", id=10)]
    host.say(BulkPacket(BULK_IN, 0, 5, data=b"hello", id=9), BulkPacket(BULK_OUT, 0, 3, id=10))
    assert host.events() == [RetSubmit(9, 0, 5, b"hello"), RetSubmit(10, 0, 3)]


def test_long_bulk_without_32_bit_lengths_is_refused_locally() -> None:
    host = _connected(ALL_CAPS - {Cap.BULK_LENGTH_32BIT})
    assert host.link.send(_in(9, 1, 65536)) == b""
    assert list(host.link.local_events) == [RetSubmit(9, -errno.EINVAL)]
    assert host.heard(host.link.send(_in(10, 1, 65535))) == [BulkPacket(BULK_IN, 0, 65535, id=10)]


def test_iso_and_unknown_endpoints_are_refused_locally() -> None:
    host = _connected()
    assert host.link.send(_in(1, 4, 192)) == b""
    assert host.link.send(_in(2, 5, 64)) == b""
    assert list(host.link.local_events) == [
        RetSubmit(1, -errno.EINVAL),
        RetSubmit(2, -errno.EINVAL),
    ]


def test_interrupt_in_starts_the_stream_once_and_packets_complete_urbs_in_order() -> None:
    host = _connected()
    assert host.heard(host.link.send(_in(1, 3, 8))) == [StartInterruptReceiving(INT_IN)]
    assert host.link.send(_in(2, 3, 8)) == b""  # already started
    host.say(
        InterruptReceivingStatus(Status.SUCCESS, INT_IN),
        InterruptPacket(INT_IN, 0, 8, b"AAAAAAAA", id=0),
        InterruptPacket(INT_IN, 0, 8, b"BBBBBBBB", id=1),
        InterruptPacket(INT_IN, 0, 8, b"CCCCCCCC", id=2),
    )
    assert host.events() == [RetSubmit(1, 0, 8, b"AAAAAAAA"), RetSubmit(2, 0, 8, b"BBBBBBBB")]
    # The third waited for a URB: the next one is answered without the usb-host.
    assert host.link.send(_in(3, 3, 8)) == b""
    assert list(host.link.local_events) == [RetSubmit(3, 0, 8, b"CCCCCCCC")]


def test_the_interrupt_backlog_keeps_the_newest_packets() -> None:
    host = _connected()
    host.heard(host.link.send(_in(1, 3, 8)))
    packets = [
        InterruptPacket(INT_IN, 0, 1, bytes([i]), id=i) for i in range(INTERRUPT_BACKLOG + 2)
    ]
    host.say(*packets)
    assert host.events() == [RetSubmit(1, 0, 1, b"\x00")]
    for seq in range(2, 2 + INTERRUPT_BACKLOG):
        host.link.send(_in(seq, 3, 8))
    first = host.link.local_events[0]
    assert isinstance(first, RetSubmit)
    assert first.data == b"\x02"  # packet 1 was the oldest beyond the backlog: dropped
    assert len(host.link.local_events) == INTERRUPT_BACKLOG


def test_an_interrupt_packet_longer_than_its_urb_is_babble() -> None:
    host = _connected()
    host.heard(host.link.send(_in(1, 3, 4)))
    host.say(InterruptPacket(INT_IN, 0, 8, b"12345678", id=0))
    assert host.events() == [RetSubmit(1, -errno.EOVERFLOW, 4, b"1234")]


def test_a_stalled_interrupt_stream_fails_its_urbs_and_starts_again() -> None:
    host = _connected()
    host.heard(host.link.send(_in(1, 3, 8)))
    host.say(InterruptReceivingStatus(Status.STALL, INT_IN))
    assert host.events() == [RetSubmit(1, -errno.EPIPE)]
    assert host.heard(host.link.send(_in(2, 3, 8))) == [StartInterruptReceiving(INT_IN)]


def test_a_new_configuration_restarts_a_stream_with_urbs_waiting() -> None:
    host = _connected()
    host.heard(host.link.send(_in(1, 3, 8)))
    config = SetupPacket.set_configuration(2).pack()
    host.heard(host.link.send(CmdSubmit(2, 0, Direction.OUT, 0, 0, setup=config)))
    host.say(ENDPOINTS, ConfigurationStatus(Status.SUCCESS, 2, id=2))  # streams stopped
    assert host.events() == [RetSubmit(2)]
    # The reader takes what the link sends unasked once it has read all there was.
    assert host.heard(host.link.take_output()) == [StartInterruptReceiving(INT_IN)]
    assert host.link.take_output() == b""


def test_a_new_alternate_setting_restarts_only_that_interfaces_streams() -> None:
    host = _connected()  # 0x83 is on interface 0
    host.heard(host.link.send(_in(1, 3, 8)))
    alt = SetupPacket(0x01, 11, 1, 1, 0).pack()
    host.heard(host.link.send(CmdSubmit(2, 0, Direction.OUT, 0, 0, setup=alt)))
    host.say(ENDPOINTS, AltSettingStatus(Status.SUCCESS, 1, 1, id=2))
    assert host.events() == [RetSubmit(2)]
    assert host.link.take_output() == b""  # interface 0's stream runs on
    alt0 = SetupPacket(0x01, 11, 0, 0, 0).pack()
    host.heard(host.link.send(CmdSubmit(3, 0, Direction.OUT, 0, 0, setup=alt0)))
    host.say(ENDPOINTS, AltSettingStatus(Status.SUCCESS, 0, 0, id=3))
    assert host.events() == [RetSubmit(3)]
    assert host.heard(host.link.take_output()) == [StartInterruptReceiving(INT_IN)]


def test_a_start_answered_inval_is_a_stream_that_runs_already() -> None:
    host = _connected()
    host.heard(host.link.send(_in(1, 3, 8)))
    host.say(InterruptReceivingStatus(Status.INVAL, INT_IN))
    assert host.events() == []
    host.say(InterruptPacket(INT_IN, 0, 1, b"k", id=0))
    assert host.events() == [RetSubmit(1, 0, 1, b"k")]


def test_a_streamed_packet_never_answers_another_urb_of_its_id() -> None:
    host = _connected()
    host.heard(host.link.send(_in(1, 3, 8)))
    host.heard(host.link.send(_in(2, 1, 512)))  # bulk IN seqnum 2
    host.say(InterruptPacket(INT_IN, 0, 1, b"M", id=2))
    assert host.events() == [RetSubmit(1, 0, 1, b"M")]
    host.say(BulkPacket(BULK_IN, 0, 2, data=b"ok", id=2))
    assert host.events() == [RetSubmit(2, 0, 2, b"ok")]


def test_a_reply_of_another_type_than_asked_is_dropped() -> None:
    host = _connected()
    host.heard(host.link.send(_in(4, 1, 512)))
    host.say(ConfigurationStatus(Status.SUCCESS, 1, id=4))
    assert host.events() == []
    host.say(BulkPacket(BULK_IN, 0, 1, data=b"b", id=4))
    assert host.events() == [RetSubmit(4, 0, 1, b"b")]


def test_a_bulk_length_over_usbredirs_limit_is_refused_locally() -> None:
    host = _connected()
    assert host.link.send(_in(5, 1, MAX_BULK_LENGTH + 1)) == b""
    assert list(host.link.local_events) == [RetSubmit(5, -errno.EINVAL)]


def test_unlinking_a_transfer_in_flight_cancels_it() -> None:
    host = _connected()
    host.heard(host.link.send(_in(1, 1, 512)))
    assert host.heard(host.link.send(CmdUnlink(2, 0, 1))) == [CancelDataPacket(id=1)]
    host.say(BulkPacket(BULK_IN, Status.CANCELLED, 0, id=1))
    assert host.events() == [RetUnlink(2, -errno.ECONNRESET)]


def test_a_transfer_that_completes_before_its_cancel_is_delivered_then_unlinked() -> None:
    host = _connected()
    host.heard(host.link.send(_in(1, 1, 512)))
    host.heard(host.link.send(CmdUnlink(2, 0, 1)))
    host.say(BulkPacket(BULK_IN, 0, 3, data=b"abc", id=1))
    assert host.events() == [RetSubmit(1, 0, 3, b"abc"), RetUnlink(2, 0)]


def test_unlinking_what_waits_for_the_stream_or_is_answered_needs_no_usb_host() -> None:
    host = _connected()
    host.heard(host.link.send(_in(1, 3, 8)))
    assert host.link.send(CmdUnlink(2, 0, 1)) == b""
    assert host.link.send(CmdUnlink(3, 0, 99)) == b""
    assert list(host.link.local_events) == [RetUnlink(2, -errno.ECONNRESET), RetUnlink(3, 0)]
    # The packet that comes later waits for the next URB instead.
    host.say(InterruptPacket(INT_IN, 0, 1, b"x", id=0))
    assert host.events() == []


def test_a_reply_to_nothing_is_dropped() -> None:
    host = _connected()
    host.say(BulkPacket(BULK_IN, 0, 1, data=b"z", id=42))
    assert host.events() == []


def test_device_disconnect_is_the_exporter_withdrawing_and_is_acknowledged() -> None:
    host = _connected()
    host.say(DeviceDisconnect())
    events = host.events()
    assert len(events) == 1
    assert isinstance(events[0], UnexportRequest)
    assert host.heard(host.link.send(UnexportReply())) == [DeviceDisconnectAck()]


def test_without_the_ack_capability_nothing_is_sent_back() -> None:
    host = _connected(ALL_CAPS - {Cap.DEVICE_DISCONNECT_ACK})
    host.say(DeviceDisconnect())
    assert host.link.send(UnexportReply()) == b""


def test_a_closed_connection_is_closed() -> None:
    host = _connected()
    host.link.receive_data(b"")
    assert host.events() == [CLOSED]
