"""The usb-host link: a usb-guest's packets in, the commands a USB/IP client would send out;
the server's replies in, usbredir's answers out. A scripted usb-guest (a codec
``Connection`` in the guest role) is the other end."""

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
)
from usbip_gadget.usb import SetupPacket
from usbip_gadget.usbredir import (
    LINK_CAPS,
    STREAM_TRANSFERS,
    AltSettingStatus,
    BulkPacket,
    CancelDataPacket,
    ConfigurationStatus,
    Connection,
    ControlPacket,
    DeviceConnect,
    EndpointEntry,
    EndpointType,
    EpInfo,
    HostLink,
    InterfaceEntry,
    InterfaceInfo,
    InterruptPacket,
    InterruptReceivingStatus,
    IsoStreamStatus,
    Packet,
    Reset,
    Role,
    SetAltSetting,
    SetConfiguration,
    StartInterruptReceiving,
    StartIsoStream,
    Status,
    StopInterruptReceiving,
    endpoint_index,
)

INT_IN, BULK_IN = 0x83, 0x81


def _tables() -> tuple[InterfaceInfo, EpInfo]:
    slots = [EndpointEntry()] * 32
    slots[0] = slots[16] = EndpointEntry(EndpointType.CONTROL, 0, 0, 64)
    slots[endpoint_index(BULK_IN)] = EndpointEntry(EndpointType.BULK, 0, 0, 512)
    slots[endpoint_index(INT_IN)] = EndpointEntry(EndpointType.INTERRUPT, 10, 1, 8)
    return InterfaceInfo((InterfaceEntry(0, 8, 6, 0x50), InterfaceEntry(1, 3, 1, 1))), EpInfo(
        tuple(slots)
    )


class Guest:
    """A scripted usb-guest: what it sends the host link, and what it hears back."""

    def __init__(self) -> None:
        self.link = HostLink()
        self.conn = Connection(Role.GUEST, caps=LINK_CAPS)
        self.link.receive_data(self.conn.hello())
        self.hear(self.link.hello())
        assert self.link.next_event() is NEED_DATA
        assert self.link.guest_ready
        offer = self.link.connect(DeviceConnect(2, 0, 0, 0, 0x1D6B, 0x0104, 0x0100), _tables)
        assert [type(p) for p in self.hear(offer)] == [InterfaceInfo, EpInfo, DeviceConnect]

    def say(self, *packets: Packet) -> list[object]:
        self.link.receive_data(b"".join(self.conn.send(p) for p in packets))
        out: list[object] = []
        while (event := self.link.next_event()) is not NEED_DATA:
            out.append(event)
            if event is CLOSED:
                break
        return out

    def hear(self, data: bytes) -> list[Packet]:
        self.conn.receive_data(data)
        out: list[Packet] = []
        while not isinstance(event := self.conn.next_event(), Sentinel):
            out.append(event)
        return out


def _submits(events: list[object]) -> list[CmdSubmit]:
    found = [e for e in events if isinstance(e, CmdSubmit)]
    assert len(found) == len([e for e in events if not isinstance(e, bytes | CmdUnlink)])
    return found


def _status(events: list[object]) -> bytes:
    [status] = [e for e in events if isinstance(e, bytes)]
    return status


def test_a_control_request_is_a_command_and_its_reply_the_answer() -> None:
    guest = Guest()
    [cmd] = guest.say(ControlPacket(0x80, 6, 0x80, 0, 0x0100, 0, 18, id=40))
    assert isinstance(cmd, CmdSubmit)
    assert (cmd.ep, cmd.direction, cmd.transfer_buffer_length) == (0, Direction.IN, 18)
    assert cmd.setup == SetupPacket.get_descriptor(1, 0, 18).pack()
    answer = guest.link.send(RetSubmit(cmd.seqnum, -errno.EPIPE))
    assert guest.hear(answer) == [ControlPacket(0x80, 6, 0x80, Status.STALL, 0x0100, 0, 0, id=40)]


def test_bulk_in_is_answered_with_its_data_and_out_with_its_length() -> None:
    guest = Guest()
    [read, write] = guest.say(
        BulkPacket(BULK_IN, 0, 512, id=1), BulkPacket(0x02, 0, 3, data=b"abc", id=2)
    )
    assert isinstance(read, CmdSubmit)
    assert isinstance(write, CmdSubmit)
    assert (read.ep, read.direction, write.data) == (1, Direction.IN, b"abc")
    heard = guest.hear(
        guest.link.send(RetSubmit(read.seqnum, 0, 2, b"hi"))
        + guest.link.send(RetSubmit(write.seqnum, 0, 3))
    )
    assert heard == [BulkPacket(BULK_IN, 0, 2, data=b"hi", id=1), BulkPacket(0x02, 0, 3, id=2)]


def test_set_configuration_is_answered_after_the_new_tables() -> None:
    guest = Guest()
    [cmd] = guest.say(SetConfiguration(1, id=7))
    assert isinstance(cmd, CmdSubmit)
    assert cmd.setup == SetupPacket.set_configuration(1).pack()
    heard = guest.hear(guest.link.send(RetSubmit(cmd.seqnum)))
    assert [type(p) for p in heard] == [InterfaceInfo, EpInfo, ConfigurationStatus]
    assert heard[-1] == ConfigurationStatus(Status.SUCCESS, 1, id=7)


def test_a_failed_set_alt_setting_sends_no_tables() -> None:
    guest = Guest()
    [cmd] = guest.say(SetAltSetting(1, 3, id=8))
    assert isinstance(cmd, CmdSubmit)
    assert cmd.setup == SetupPacket(0x01, 11, 3, 1, 0).pack()
    heard = guest.hear(guest.link.send(RetSubmit(cmd.seqnum, -errno.EPIPE)))
    assert heard == [AltSettingStatus(Status.STALL, 1, 3, id=8)]


def test_reset_is_the_hub_port_reset_and_gets_no_answer() -> None:
    guest = Guest()
    [cmd] = guest.say(Reset())
    assert isinstance(cmd, CmdSubmit)
    assert cmd.setup == SetupPacket(0x23, 3, 4, 1, 0).pack()
    assert guest.link.send(RetSubmit(cmd.seqnum)) == b""


def test_a_cancel_is_an_unlink_answered_as_cancelled() -> None:
    guest = Guest()
    [read] = guest.say(BulkPacket(BULK_IN, 0, 512, id=5))
    [unlink] = guest.say(CancelDataPacket(id=5))
    assert isinstance(read, CmdSubmit)
    assert isinstance(unlink, CmdUnlink)
    assert unlink.unlink_seqnum == read.seqnum
    heard = guest.hear(guest.link.send(RetUnlink(unlink.seqnum, -errno.ECONNRESET)))
    assert heard == [BulkPacket(BULK_IN, Status.CANCELLED, 0, id=5)]
    assert guest.say(CancelDataPacket(id=5)) == []  # answered: nothing left to cancel


def test_interrupt_receiving_keeps_transfers_queued_and_numbers_its_packets() -> None:
    guest = Guest()
    events = guest.say(StartInterruptReceiving(INT_IN, id=3))
    assert guest.hear(_status(events)) == [InterruptReceivingStatus(Status.SUCCESS, INT_IN, id=3)]
    transfers = _submits(events)
    assert len(transfers) == STREAM_TRANSFERS
    first = transfers[0]
    assert (first.ep, first.direction, first.transfer_buffer_length) == (3, Direction.IN, 8)
    heard = guest.hear(guest.link.send(RetSubmit(first.seqnum, 0, 1, b"k")))
    assert heard == [InterruptPacket(INT_IN, Status.SUCCESS, 1, b"k", id=0)]
    [again] = guest.link.local_events  # the stream's next transfer, made by the link
    assert isinstance(again, CmdSubmit)
    assert again.ep == 3


def test_a_late_transfer_of_a_stopped_stream_does_not_end_the_next_one() -> None:
    guest = Guest()
    old = _submits(guest.say(StartInterruptReceiving(INT_IN)))
    events = guest.say(StopInterruptReceiving(INT_IN))
    unlinks = [e for e in events if isinstance(e, CmdUnlink)]
    assert len(unlinks) == STREAM_TRANSFERS
    new = _submits(guest.say(StartInterruptReceiving(INT_IN)))
    # The old stream's running transfer is unlinked only now, as the new stream runs.
    assert guest.link.send(RetUnlink(unlinks[0].seqnum, -errno.ECONNRESET)) == b""
    assert guest.link.send(RetSubmit(old[1].seqnum, 0, 1, b"x")) == b""
    heard = guest.hear(guest.link.send(RetSubmit(new[0].seqnum, 0, 1, b"y")))
    assert heard == [InterruptPacket(INT_IN, Status.SUCCESS, 1, b"y", id=0)]


def test_a_stalled_stream_stops_and_unlinks_its_other_transfers() -> None:
    guest = Guest()
    seqnums = [t.seqnum for t in _submits(guest.say(StartInterruptReceiving(INT_IN)))]
    heard = guest.hear(guest.link.send(RetSubmit(seqnums[0], -errno.EPIPE)))
    assert heard == [InterruptReceivingStatus(Status.STALL, INT_IN)]
    unlinked = [u.unlink_seqnum for u in guest.link.local_events if isinstance(u, CmdUnlink)]
    assert len(unlinked) == len(guest.link.local_events)
    assert sorted(unlinked) == sorted(seqnums[1:])


def test_streams_on_endpoints_that_are_not_interrupt_in_are_stalled() -> None:
    guest = Guest()
    [status] = guest.say(StartInterruptReceiving(BULK_IN, id=9))
    assert isinstance(status, bytes)
    assert guest.hear(status) == [InterruptReceivingStatus(Status.STALL, BULK_IN, id=9)]


def test_iso_streams_are_refused() -> None:
    guest = Guest()
    [status] = guest.say(StartIsoStream(0x84, 8, 4, id=2))
    assert isinstance(status, bytes)
    assert guest.hear(status) == [IsoStreamStatus(Status.STALL, 0x84, id=2)]


def test_interrupt_out_is_a_command_and_interrupt_in_is_never_asked_for() -> None:
    guest = Guest()
    [cmd] = guest.say(InterruptPacket(0x03, 0, 1, b"o", id=1))
    assert isinstance(cmd, CmdSubmit)
    assert (cmd.ep, cmd.direction, cmd.data) == (3, Direction.OUT, b"o")
    assert guest.hear(guest.link.send(RetSubmit(cmd.seqnum, 0, 1))) == [
        InterruptPacket(0x03, Status.SUCCESS, 1, id=1)
    ]
    with pytest.raises(LocalProtocolError, match="never asked for"):
        guest.conn.send(InterruptPacket(INT_IN, 0, 1, id=2))


def test_the_end_of_the_stream_is_closed() -> None:
    guest = Guest()
    guest.link.receive_data(b"")
    assert guest.link.next_event() is CLOSED


def test_answers_before_a_device_is_connected_are_refused() -> None:
    link = HostLink()
    with pytest.raises(LocalProtocolError):
        link.tables()
