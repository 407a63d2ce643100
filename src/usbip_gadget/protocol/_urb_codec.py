"""The URB phase on the wire: CMD/RET_SUBMIT (with ISO descriptors) and CMD/RET_UNLINK.

Parsers take a buffer and return ``(message, consumed)`` or ``None`` when more bytes are
needed; they never consume partially. Every length and count from the wire is checked
before it is used; a violation raises ``RemoteProtocolError``. Builders check what we
are about to send and raise ``LocalProtocolError``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from usbip_gadget._errors import LocalProtocolError, RemoteProtocolError
from usbip_gadget.protocol._constants import (
    MAX_ISO_PACKETS,
    URB_HEADER_SIZE,
    Command,
    Direction,
)
from usbip_gadget.protocol._messages import (
    CmdSubmit,
    CmdUnlink,
    IsoPacket,
    RetSubmit,
    RetUnlink,
    UrbMessage,
    is_iso_count,
)
from usbip_gadget.protocol._reader import Reader, Short

_BASIC = struct.Struct(">IIIII")
_SUBMIT = struct.Struct(">Iiiii8s")
_RET_SUBMIT = struct.Struct(">iiiii8x")
_UNLINK = struct.Struct(">I24x")
_RET_UNLINK = struct.Struct(">i24x")
_ISO = struct.Struct(">IIIi")

assert _BASIC.size + _SUBMIT.size == URB_HEADER_SIZE == _BASIC.size + _RET_SUBMIT.size


@dataclass(frozen=True, slots=True)
class SubmitShape:
    """What a RET_SUBMIT's framing depends on: the submitted URB's direction and sizes."""

    direction: Direction
    transfer_buffer_length: int
    number_of_packets: int


def pack_urb(message: UrbMessage, *, max_transfer: int) -> bytes:
    """The bytes of a URB-phase message (both directions)."""
    try:
        match message:
            case CmdSubmit():
                return _pack_cmd_submit(message, max_transfer)
            case RetSubmit():
                return _pack_ret_submit(message)
            case CmdUnlink():
                basic = _BASIC.pack(
                    Command.CMD_UNLINK, message.seqnum, message.devid, message.direction, 0
                )
                return basic + _UNLINK.pack(message.unlink_seqnum)
            case RetUnlink():
                basic = _BASIC.pack(Command.RET_UNLINK, message.seqnum, 0, 0, 0)
                return basic + _RET_UNLINK.pack(message.status)
    except struct.error as exc:
        raise LocalProtocolError(f"field out of range in {type(message).__name__}: {exc}") from None
    raise LocalProtocolError(f"not a URB message: {message!r}")


def _pack_cmd_submit(cmd: CmdSubmit, max_transfer: int) -> bytes:
    length = cmd.transfer_buffer_length
    if not 0 <= length <= max_transfer:
        raise LocalProtocolError(f"transfer_buffer_length {length} outside 0..{max_transfer}")
    expected = length if cmd.direction == Direction.OUT else 0
    if len(cmd.data) != expected:
        raise LocalProtocolError(f"CMD_SUBMIT carries {len(cmd.data)} bytes, expected {expected}")
    if len(cmd.setup) != 8:
        raise LocalProtocolError("setup packet must be 8 bytes")
    if not 0 <= cmd.ep <= 15:
        raise LocalProtocolError(f"endpoint number {cmd.ep} outside 0..15")
    _check_iso_layout(cmd.number_of_packets, cmd.iso_packets, length, LocalProtocolError)
    basic = _BASIC.pack(Command.CMD_SUBMIT, cmd.seqnum, cmd.devid, cmd.direction, cmd.ep)
    head = _SUBMIT.pack(
        cmd.transfer_flags, length, cmd.start_frame, cmd.number_of_packets, cmd.interval, cmd.setup
    )
    return basic + head + cmd.data + _pack_iso(cmd.iso_packets)


def _pack_ret_submit(ret: RetSubmit) -> bytes:
    if ret.actual_length < 0 or len(ret.data) not in (0, ret.actual_length):
        raise LocalProtocolError("RET_SUBMIT data must be empty or actual_length bytes")
    if is_iso_count(ret.number_of_packets) != bool(ret.iso_packets) or (
        ret.iso_packets and len(ret.iso_packets) != ret.number_of_packets
    ):
        raise LocalProtocolError("RET_SUBMIT number_of_packets disagrees with its ISO packets")
    basic = _BASIC.pack(Command.RET_SUBMIT, ret.seqnum, 0, 0, 0)
    head = _RET_SUBMIT.pack(
        ret.status, ret.actual_length, ret.start_frame, ret.number_of_packets, ret.error_count
    )
    return basic + head + ret.data + _pack_iso(ret.iso_packets)


def sum_actual(packets: Sequence[IsoPacket]) -> int:
    """Total bytes the ISO packets carry."""
    return sum(p.actual_length for p in packets)


def _pack_iso(packets: Sequence[IsoPacket]) -> bytes:
    return b"".join(_ISO.pack(p.offset, p.length, p.actual_length, p.status) for p in packets)


def _check_iso_layout(
    count: int,
    packets: Sequence[IsoPacket],
    buffer_length: int,
    error: type[LocalProtocolError] | type[RemoteProtocolError],
) -> None:
    """ISO descriptors must be as many as announced and lie inside the transfer buffer."""
    if not is_iso_count(count):
        if packets:
            raise error("ISO packet descriptors on a non-isochronous URB")
        return
    if not 0 < count <= MAX_ISO_PACKETS or len(packets) != count:
        raise error(f"number_of_packets {count} invalid (1..{MAX_ISO_PACKETS})")
    for i, p in enumerate(packets):
        if p.offset + p.length > buffer_length or p.actual_length > p.length:
            raise error(f"ISO packet {i} (offset {p.offset}, length {p.length}) outside buffer")


def parse_cmd(
    data: bytes | bytearray | memoryview, *, max_transfer: int
) -> tuple[CmdSubmit | CmdUnlink, int] | None:
    """Parse a CMD_SUBMIT or CMD_UNLINK (the device side's input)."""
    reader = Reader(data)
    try:
        code, seqnum, devid, direction, ep = reader.unpack(_BASIC)
        if code == Command.CMD_UNLINK:
            (target,) = reader.unpack(_UNLINK)
            return CmdUnlink(seqnum, devid, target, _direction(direction)), reader.pos
        if code != Command.CMD_SUBMIT:
            raise RemoteProtocolError(f"expected CMD_SUBMIT or CMD_UNLINK, got 0x{code:08x}")
        return _parse_cmd_submit(reader, seqnum, devid, direction, ep, max_transfer), reader.pos
    except Short:
        return None


def _direction(value: int) -> Direction:
    if value not in (0, 1):
        raise RemoteProtocolError(f"direction {value} is neither OUT (0) nor IN (1)")
    return Direction(value)


def _parse_cmd_submit(
    reader: Reader, seqnum: int, devid: int, direction: int, ep: int, max_transfer: int
) -> CmdSubmit:
    flags, length, start_frame, npk, interval, setup = reader.unpack(_SUBMIT)
    dir_ = _direction(direction)
    if not 0 <= ep <= 15:
        raise RemoteProtocolError(f"endpoint number {ep} outside 0..15")
    if not 0 <= length <= max_transfer:
        raise RemoteProtocolError(f"transfer_buffer_length {length} outside 0..{max_transfer}")
    _check_iso_count(npk, MAX_ISO_PACKETS)
    data = bytes(reader.take(length)) if dir_ == Direction.OUT else b""
    packets = _read_iso(reader, npk)
    _check_iso_layout(npk, packets, length, RemoteProtocolError)
    return CmdSubmit(
        seqnum, devid, dir_, ep, length, flags, setup, data,
        start_frame, npk, interval, packets,
    )  # fmt: skip


def _check_iso_count(npk: int, limit: int) -> None:
    if is_iso_count(npk) and not 0 < npk <= limit:
        raise RemoteProtocolError(f"number_of_packets {npk} outside 1..{limit}")


def _read_iso(reader: Reader, npk: int) -> tuple[IsoPacket, ...]:
    if not is_iso_count(npk):
        return ()
    return tuple(IsoPacket(*reader.unpack(_ISO)) for _ in range(npk))


def parse_ret(
    data: bytes | bytearray | memoryview, shape_of: Callable[[int], SubmitShape]
) -> tuple[RetSubmit | RetUnlink, int] | None:
    """Parse a RET_SUBMIT or RET_UNLINK (the host side's input).

    ``shape_of(seqnum)`` tells how the URB was submitted: replies carry direction 0, so
    only the submitter knows whether a payload follows. It raises for unknown seqnums.
    """
    reader = Reader(data)
    try:
        code, seqnum, _devid, _dir, _ep = reader.unpack(_BASIC)
        if code == Command.RET_UNLINK:
            (status,) = reader.unpack(_RET_UNLINK)
            return RetUnlink(seqnum, status), reader.pos
        if code != Command.RET_SUBMIT:
            raise RemoteProtocolError(f"expected RET_SUBMIT or RET_UNLINK, got 0x{code:08x}")
        return _parse_ret_submit(reader, seqnum, shape_of(seqnum)), reader.pos
    except Short:
        return None


def ret_length(
    data: bytes | bytearray | memoryview, shape_of: Callable[[int], SubmitShape]
) -> int | None:
    """The whole length of the RET_SUBMIT/RET_UNLINK starting ``data``, once its header is in.

    Only a hint for how much to wait for: ``parse_ret`` still checks everything.
    """
    if len(data) < URB_HEADER_SIZE:
        return None
    code, seqnum, _devid, _dir, _ep = _BASIC.unpack_from(data)
    if code != Command.RET_SUBMIT:
        return URB_HEADER_SIZE
    _status, actual, _start, npk, _errors = _RET_SUBMIT.unpack_from(data, _BASIC.size)
    try:
        shape = shape_of(seqnum)
    except RemoteProtocolError:
        return URB_HEADER_SIZE  # parse_ret will say what is wrong with it
    payload = max(0, actual) if shape.direction == Direction.IN else 0
    iso = _ISO.size * npk if is_iso_count(npk) and 0 < npk <= 1024 else 0
    return URB_HEADER_SIZE + payload + iso


def _parse_ret_submit(reader: Reader, seqnum: int, shape: SubmitShape) -> RetSubmit:
    status, actual, start_frame, npk, error_count = reader.unpack(_RET_SUBMIT)
    if not 0 <= actual <= shape.transfer_buffer_length:
        raise RemoteProtocolError(
            f"seqnum {seqnum}: actual_length {actual} outside 0..{shape.transfer_buffer_length}"
        )
    submitted_iso = is_iso_count(shape.number_of_packets)
    if is_iso_count(npk) and not submitted_iso:
        raise RemoteProtocolError(f"seqnum {seqnum}: ISO packets in reply to a non-ISO URB")
    _check_iso_count(npk, shape.number_of_packets if submitted_iso else 0)
    data = bytes(reader.take(actual)) if shape.direction == Direction.IN else b""
    packets = _read_iso(reader, npk)
    _check_iso_layout(npk, packets, shape.transfer_buffer_length, RemoteProtocolError)
    if packets and shape.direction == Direction.IN and sum_actual(packets) != actual:
        raise RemoteProtocolError(f"seqnum {seqnum}: ISO actual lengths do not add up")
    return RetSubmit(seqnum, status, actual, data, start_frame, npk, error_count, packets)
