"""The capture at the end of the USB/IP spec, and fixed layouts, byte for byte."""

from __future__ import annotations

from tests.protocol.helpers import SAMPLE_DEVICE, feed, imported_pair
from usbip_gadget.protocol import (
    CmdSubmit,
    Connection,
    DevlistReply,
    DevlistRequest,
    Direction,
    ExportedDevice,
    InterfaceInfo,
    RetSubmit,
    Role,
)

# Documentation/usb/usbip_protocol.rst, "EXAMPLE" (HID payload).
CMD_INTR_IN = bytes.fromhex(
    "00000001 00000d05 0001000f 00000001 00000001 00000200 00000040 ffffffff"
    " 00000000 00000004 00000000 00000000".replace(" ", "")
)
HID_OUT = bytes.fromhex("ffffffff860008a784ce5ae2123763" + "00" * 49)
CMD_INTR_OUT = (
    bytes.fromhex(
        "00000001 00000d06 0001000f 00000000 00000001 00000000 00000040 ffffffff"
        " 00000000 00000004 00000000 00000000".replace(" ", "")
    )
    + HID_OUT
)
RET_INTR_OUT = bytes.fromhex(
    "00000003 00000d06 00000000 00000000 00000000 00000000 00000040 ffffffff"
    " 00000000 00000000 00000000 00000000".replace(" ", "")
)
HID_IN = bytes.fromhex("ffffffff860011a784ce5ae2123763612891b102010000040000" + "00" * 38)
RET_INTR_IN = (
    bytes.fromhex(
        "00000003 00000d05 00000000 00000000 00000000 00000000 00000040 ffffffff"
        " 00000000 00000000 00000000 00000000".replace(" ", "")
    )
    + HID_IN
)


def test_spec_capture_parses_on_both_sides() -> None:
    host, device = imported_pair()
    intr_in = CmdSubmit(0xD05, 0x1000F, Direction.IN, 1, 64, 0x200, start_frame=-1,
                        number_of_packets=0, interval=4)  # fmt: skip
    intr_out = CmdSubmit(0xD06, 0x1000F, Direction.OUT, 1, 64, 0, data=HID_OUT,
                         start_frame=-1, number_of_packets=0, interval=4)  # fmt: skip
    # Our encoding of the two commands is the captured bytes.
    assert host.send(intr_in) == CMD_INTR_IN
    assert host.send(intr_out) == CMD_INTR_OUT
    # The device side parses the capture, fed one byte at a time.
    assert feed(device, CMD_INTR_IN + CMD_INTR_OUT, trickle=True) == [intr_in, intr_out]
    # Replies carry direction 0: only the remembered seqnum tells that RetIntrIn has a payload.
    events = feed(host, RET_INTR_OUT + RET_INTR_IN, trickle=True)
    assert events == [
        RetSubmit(0xD06, 0, 64, b"", -1, 0, 0),
        RetSubmit(0xD05, 0, 64, HID_IN, -1, 0, 0),
    ]
    assert len(HID_IN) == len(HID_OUT) == 64


def test_devlist_layout_matches_spec_offsets() -> None:
    entry = ExportedDevice(SAMPLE_DEVICE, (InterfaceInfo(8, 6, 0x50),))
    wire = Connection(Role.DEVICE)
    wire.receive_data(Connection(Role.HOST).send(DevlistRequest()))
    assert wire.next_event() == DevlistRequest()
    data = wire.send(DevlistReply((entry,)))
    assert data[:12] == bytes.fromhex("0111 0005 00000000 00000001".replace(" ", ""))
    assert data[0x0C : 0x0C + 42].rstrip(b"\0") == SAMPLE_DEVICE.path.encode()
    assert data[0x10C : 0x10C + 4] == b"1-1\0"
    assert data[0x138:0x13A] == b"\x1d\x6b"  # idVendor
    assert data[0x143] == 1  # bNumInterfaces
    assert data[0x144:0x148] == bytes([8, 6, 0x50, 0])
    assert len(data) == 0x148
