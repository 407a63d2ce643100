"""A USB flash drive speaking Bulk-Only Transport (USB MSC BOT 1.0) as a ``FakeRemote`` model.

A CBW on the bulk OUT endpoint starts a command: READ(10) sends blocks of the in-memory image
as data-in packets, WRITE(10) takes the next OUT URBs as its data-out stage and writes them
into the image, TEST UNIT READY has no data; each ends with a 13-byte CSW on bulk IN.
``stall_next_data_in`` makes the next data-in command stall bulk IN instead of sending its
data (BOT §6.7.2: the host clears the halt and reads the CSW, which reports the failure).
Bulk-Only Mass Storage Reset and Get Max LUN are answered on ep0.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from usbip_gadget.testing import FakeRemote, Reply
from usbip_gadget.usb import RequestType, SetupPacket

BLOCK = 512
CBW = struct.Struct("<IIIBBB16s")  # dCBWSignature, dCBWTag, dCBWDataTransferLength, ...
CSW = struct.Struct("<IIIB")  # dCSWSignature, dCSWTag, dCSWDataResidue, bCSWStatus
CBW_SIGNATURE = 0x43425355
CSW_SIGNATURE = 0x53425355
TEST_UNIT_READY = 0x00
READ_10 = 0x28
WRITE_10 = 0x2A
BULK_ONLY_RESET = 0xFF
GET_MAX_LUN = 0xFE
PASSED, FAILED = 0, 1


def cbw(tag: int, length: int, cdb: bytes, *, data_in: bool) -> bytes:
    """A Command Block Wrapper for LUN 0."""
    return CBW.pack(CBW_SIGNATURE, tag, length, 0x80 if data_in else 0, 0, len(cdb), cdb)


def read10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", READ_10, 0, lba, 0, blocks, 0)


def write10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", WRITE_10, 0, lba, 0, blocks, 0)


@dataclass(frozen=True)
class Status:
    """A parsed Command Status Wrapper."""

    tag: int
    residue: int
    status: int


def parse_csw(raw: bytes) -> Status:
    assert len(raw) == CSW.size, f"a CSW is 13 bytes, got {len(raw)}"
    signature, tag, residue, status = CSW.unpack(raw)
    assert signature == CSW_SIGNATURE
    return Status(tag, residue, status)


@dataclass(frozen=True)
class Command:
    tag: int
    length: int
    data_in: bool
    cdb: bytes

    @property
    def opcode(self) -> int:
        return self.cdb[0]

    @property
    def blocks(self) -> tuple[int, int]:
        """(LBA, count) of a READ(10) or WRITE(10)."""
        return int.from_bytes(self.cdb[2:6], "big"), int.from_bytes(self.cdb[7:9], "big")


@dataclass
class _Write:
    command: Command
    offset: int
    remaining: int


class BulkOnlyDisk:
    """The device model of a flash drive; it installs itself as ``remote``'s handlers."""

    def __init__(
        self, remote: FakeRemote, image: bytearray, *, bulk_in: int = 0x81, bulk_out: int = 0x02
    ) -> None:
        self.remote = remote
        self.image = image
        self.bulk_in = bulk_in
        self.bulk_out = bulk_out
        self.commands: list[Command] = []
        self.resets = 0
        self.stall_next_data_in = False
        self._write: _Write | None = None
        remote.on_out = self._out
        remote.on_control = self._control

    def _control(self, setup: SetupPacket, data: bytes) -> bytes | Reply:
        kind = setup.bm_request_type & ~RequestType.DIRECTION_MASK
        if kind != RequestType.CLASS | RequestType.INTERFACE:
            return Reply.STALL
        if setup.b_request == BULK_ONLY_RESET and not setup.is_in:
            self.resets += 1
            self._write = None
            return b""
        if setup.b_request == GET_MAX_LUN and setup.is_in:
            return b"\x00"
        return Reply.STALL

    def _out(self, address: int, data: bytes) -> None:
        if address != self.bulk_out:
            return
        if self._write is not None:
            self._data_out(self._write, data)
            return
        if len(data) != CBW.size or CBW.unpack(data)[0] != CBW_SIGNATURE:
            self.remote.halt(self.bulk_in)  # BOT §6.6.1: an invalid CBW halts both
            self.remote.halt(self.bulk_out)
            return
        _signature, tag, length, flags, _lun, size, cdb = CBW.unpack(data)
        command = Command(tag, length, bool(flags & 0x80), cdb[:size])
        self.commands.append(command)
        if command.data_in and length:
            self._data_in(command)
        elif length:
            lba, _count = command.blocks
            self._write = _Write(command, lba * BLOCK, length)
        else:
            ok = command.opcode == TEST_UNIT_READY
            self._csw(command.tag, 0, PASSED if ok else FAILED)

    def _data_in(self, command: Command) -> None:
        if self.stall_next_data_in or command.opcode != READ_10:
            self.stall_next_data_in = False
            self.remote.halt(self.bulk_in)
            self._csw(command.tag, command.length, FAILED)
            return
        lba, count = command.blocks
        data = bytes(self.image[lba * BLOCK : (lba + count) * BLOCK])[: command.length]
        self.remote.send_in(self.bulk_in, data, zlp=len(data) < command.length)
        self._csw(command.tag, command.length - len(data), PASSED)

    def _data_out(self, write: _Write, data: bytes) -> None:
        taken = data[: write.remaining]
        self.image[write.offset : write.offset + len(taken)] = taken
        write.offset += len(taken)
        write.remaining -= len(taken)
        if not write.remaining or len(data) % BLOCK:
            self._write = None
            self._csw(write.command.tag, write.remaining, PASSED)

    def _csw(self, tag: int, residue: int, status: int) -> None:
        self.remote.send_in(self.bulk_in, CSW.pack(CSW_SIGNATURE, tag, residue, status))
