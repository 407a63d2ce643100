"""Hypothesis strategies for every USB/IP message."""

from __future__ import annotations

from hypothesis import strategies as st

from usbip_gadget.protocol import (
    NO_ISO,
    CmdSubmit,
    CmdUnlink,
    Direction,
    ExportedDevice,
    InterfaceInfo,
    IsoPacket,
    RetSubmit,
    RetUnlink,
    UsbDevice,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
i32 = st.integers(-(2**31), 2**31 - 1)
_text = st.text(st.characters(min_codepoint=1, max_codepoint=0x7F), max_size=31)


@st.composite
def usb_devices(draw: st.DrawFn, num_interfaces: int | None = None) -> UsbDevice:
    return UsbDevice(
        path=draw(st.text(st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=80)),
        busid=draw(_text),
        busnum=draw(u32),
        devnum=draw(u32),
        speed=draw(u32),
        id_vendor=draw(u16),
        id_product=draw(u16),
        bcd_device=draw(u16),
        b_device_class=draw(u8),
        b_device_sub_class=draw(u8),
        b_device_protocol=draw(u8),
        b_configuration_value=draw(u8),
        b_num_configurations=draw(u8),
        b_num_interfaces=draw(u8) if num_interfaces is None else num_interfaces,
    )


@st.composite
def exported_devices(draw: st.DrawFn) -> ExportedDevice:
    interfaces = draw(st.lists(st.builds(InterfaceInfo, u8, u8, u8), max_size=8))
    return ExportedDevice(draw(usb_devices(len(interfaces))), tuple(interfaces))


@st.composite
def iso_layouts(draw: st.DrawFn, length: int, *, compact_in: bool) -> tuple[IsoPacket, ...]:
    """Consecutive, non-overlapping ISO descriptors inside a buffer of ``length`` bytes."""
    count = draw(st.integers(1, 8))
    packets = []
    offset = 0
    for _ in range(count):
        size = draw(st.integers(0, length - offset))
        actual = draw(st.integers(0, size)) if compact_in else size
        packets.append(IsoPacket(offset, size, actual, draw(st.sampled_from([0, -18, -71]))))
        offset += size
    return tuple(packets)


@st.composite
def cmd_submits(draw: st.DrawFn, seqnum: int | None = None) -> CmdSubmit:
    direction = draw(st.sampled_from(Direction))
    length = draw(st.integers(0, 600))
    iso = draw(st.booleans())
    packets = draw(iso_layouts(length, compact_in=False)) if iso else ()
    return CmdSubmit(
        seqnum=draw(u32) if seqnum is None else seqnum,
        devid=draw(u32),
        direction=direction,
        ep=draw(st.integers(0, 15)),
        transfer_buffer_length=length,
        transfer_flags=draw(u32),
        setup=draw(st.binary(min_size=8, max_size=8)),
        data=draw(st.binary(min_size=length, max_size=length)) if direction == 0 else b"",
        start_frame=draw(i32),
        number_of_packets=len(packets) if iso else draw(st.sampled_from([NO_ISO, 0])),
        interval=draw(i32),
        iso_packets=packets,
    )


@st.composite
def ret_submit_for(draw: st.DrawFn, cmd: CmdSubmit) -> RetSubmit:
    """A valid reply to ``cmd``."""
    if cmd.is_iso:
        packets = draw(iso_layouts(cmd.transfer_buffer_length, compact_in=True))
        packets = packets[: cmd.number_of_packets]
        actual = sum(p.actual_length for p in packets)
        npk = len(packets)
    else:
        packets, npk = (), NO_ISO
        actual = draw(st.integers(0, cmd.transfer_buffer_length))
    data = draw(st.binary(min_size=actual, max_size=actual)) if cmd.direction == 1 else b""
    return RetSubmit(
        seqnum=cmd.seqnum,
        status=draw(st.sampled_from([0, -32, -104, -71, -19])),
        actual_length=actual,
        data=data,
        start_frame=draw(i32),
        number_of_packets=npk,
        error_count=draw(st.integers(0, 8)),
        iso_packets=packets,
    )


def cmd_unlinks(seqnum: int, target: int) -> st.SearchStrategy[CmdUnlink]:
    return st.builds(CmdUnlink, st.just(seqnum), u32, st.just(target), st.sampled_from(Direction))


def ret_unlinks(seqnum: int) -> st.SearchStrategy[RetUnlink]:
    return st.builds(RetUnlink, st.just(seqnum), st.sampled_from([0, -104]))
