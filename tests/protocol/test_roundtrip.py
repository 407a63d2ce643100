"""Every message survives build → parse in both directions, whole and one byte at a time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.protocol import strategies as s
from tests.protocol.helpers import SAMPLE_DEVICE, feed, imported_pair, transfer
from usbip_gadget.protocol import (
    Connection,
    DevlistReply,
    DevlistRequest,
    ExportedDevice,
    ExportReply,
    ExportRequest,
    ImportReply,
    ImportRequest,
    OpStatus,
    Phase,
    Role,
    UnexportReply,
    UnexportRequest,
    UsbDevice,
)

trickles = st.booleans()


@given(st.lists(s.exported_devices(), max_size=4), trickles)
def test_devlist_roundtrip(devices: list[ExportedDevice], trickle: bool) -> None:
    host, device = Connection(Role.HOST), Connection(Role.DEVICE)
    assert transfer(host, device, DevlistRequest(), trickle=trickle) == DevlistRequest()
    reply = DevlistReply(tuple(devices))
    assert transfer(device, host, reply, trickle=trickle) == reply
    assert host.phase is Phase.CLOSED
    assert device.phase is Phase.CLOSED


@given(s.usb_devices(), s._text, trickles)
def test_import_roundtrip(dev: UsbDevice, busid: str, trickle: bool) -> None:
    host, device = Connection(Role.HOST), Connection(Role.DEVICE)
    assert transfer(host, device, ImportRequest(busid), trickle=trickle) == ImportRequest(busid)
    assert transfer(device, host, ImportReply(0, dev), trickle=trickle) == ImportReply(0, dev)
    assert host.phase is Phase.URB
    assert device.phase is Phase.URB


@given(st.sampled_from([s for s in OpStatus if s != 0]), trickles)
def test_import_refused_ends_after_header(status: int, trickle: bool) -> None:
    host, device = Connection(Role.HOST), Connection(Role.DEVICE)
    transfer(host, device, ImportRequest("1-1"), trickle=trickle)
    wire = device.send(ImportReply(status))
    assert len(wire) == 8
    assert feed(host, wire, trickle=trickle) == [ImportReply(status)]
    assert host.phase is Phase.CLOSED


@given(s.usb_devices(), trickles, st.integers(-5, 5))
def test_export_and_unexport_roundtrip(dev: UsbDevice, trickle: bool, rc: int) -> None:
    exporter, gadget = Connection(Role.DEVICE), Connection(Role.HOST)
    assert transfer(exporter, gadget, ExportRequest(dev), trickle=trickle) == ExportRequest(dev)
    assert transfer(gadget, exporter, ExportReply(0, rc), trickle=trickle) == ExportReply(0, rc)
    expected = Phase.URB if rc == 0 else Phase.CLOSED
    assert (exporter.phase, gadget.phase) == (expected, expected)
    if rc == 0:
        # The exporter withdraws the device on the same connection.
        assert transfer(exporter, gadget, UnexportRequest(dev), trickle=trickle) == (
            UnexportRequest(dev)
        )
        assert transfer(gadget, exporter, UnexportReply(), trickle=trickle) == UnexportReply()
        assert gadget.phase is Phase.CLOSED


def test_export_request_is_header_plus_device_record() -> None:
    wire = Connection(Role.DEVICE).send(ExportRequest(SAMPLE_DEVICE))
    assert len(wire) == 8 + 312
    assert wire[:4] == b"\x01\x11\x80\x06"
    reply = Connection(Role.HOST)
    reply.receive_data(wire)
    reply.next_event()
    assert reply.send(ExportReply(0, 0)) == b"\x01\x11\x00\x06" + bytes(8)


@given(st.data(), trickles)
def test_urb_roundtrip(data: st.DataObject, trickle: bool) -> None:
    host, device = imported_pair()
    cmds = [data.draw(s.cmd_submits(seqnum=n)) for n in range(1, 5)]
    for cmd in cmds:
        assert transfer(host, device, cmd, trickle=trickle) == cmd
    # Replies in any order, as a real device completes them.
    for cmd in data.draw(st.permutations(cmds)):
        ret = data.draw(s.ret_submit_for(cmd))
        assert transfer(device, host, ret, trickle=trickle) == ret
    assert host.state.pending == frozenset()


@given(st.data(), trickles)
def test_unlink_roundtrip(data: st.DataObject, trickle: bool) -> None:
    host, device = imported_pair()
    cmd = data.draw(s.cmd_submits(seqnum=7))
    transfer(host, device, cmd, trickle=trickle)
    unlink = data.draw(s.cmd_unlinks(8, 7))
    assert transfer(host, device, unlink, trickle=trickle) == unlink
    ret = data.draw(s.ret_unlinks(8))
    assert transfer(device, host, ret, trickle=trickle) == ret
    assert 7 not in host.state.pending  # settled by RET_UNLINK whatever its status
