"""Scripted USB/IP servers for the client tests, speaking through our own sans-I/O layer."""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from tests.usb.vectors import KEYBOARD_CONFIG, KEYBOARD_REPORT, MASS_STORAGE_CONFIG
from usbip_gadget.protocol import (
    CLOSED,
    NEED_DATA,
    CmdSubmit,
    CmdUnlink,
    Connection,
    DevlistReply,
    DevlistRequest,
    Direction,
    ExportedDevice,
    ImportReply,
    ImportRequest,
    InterfaceInfo,
    Message,
    OpStatus,
    RetSubmit,
    RetUnlink,
    Role,
    UsbDevice,
)
from usbip_gadget.usb import DescriptorType, Request, SetupPacket, encode_lang_ids, encode_string

STALL = -errno.EPIPE


@dataclass
class FakeUsbDevice:
    """A device that answers standard GET_DESCRIPTOR requests from its descriptors."""

    device_raw: bytes
    configs_raw: list[bytes]
    strings: dict[int, dict[int, str]] = field(default_factory=dict)
    bos: bytes | None = None
    qualifier: bytes | None = None
    hid_reports: dict[int, bytes] = field(default_factory=dict)
    speed: int = 3  # high
    busid: str = "1-1"
    id_vendor: int = 0x1D6B
    id_product: int = 0x0104

    def record(self) -> UsbDevice:
        return UsbDevice(
            f"/sys/devices/platform/dummy_hcd.0/usb1/{self.busid}", self.busid, 1, 2, self.speed,
            self.id_vendor, self.id_product, 0x0100, 0, 0, 0, 1, len(self.configs_raw), 1,
        )  # fmt: skip

    def control(self, setup: SetupPacket) -> tuple[int, bytes]:
        """(status, data) for a control request."""
        if setup.b_request != Request.GET_DESCRIPTOR or not setup.is_in:
            return 0, b""
        data = self._descriptor(setup.w_value >> 8, setup.w_value & 0xFF, setup.w_index)
        if data is None:
            return STALL, b""
        return 0, data[: setup.w_length]

    def _descriptor(self, dtype: int, index: int, w_index: int) -> bytes | None:
        if dtype == DescriptorType.DEVICE:
            return self.device_raw
        if dtype == DescriptorType.CONFIGURATION:
            return self.configs_raw[index] if index < len(self.configs_raw) else None
        if dtype == DescriptorType.STRING:
            if index == 0:
                return encode_lang_ids(list(self.strings)) if self.strings else None
            text = self.strings.get(w_index, {}).get(index)
            return None if text is None else encode_string(text)
        if dtype == DescriptorType.BOS:
            return self.bos
        if dtype == DescriptorType.DEVICE_QUALIFIER:
            return self.qualifier
        if dtype == DescriptorType.HID_REPORT:
            return self.hid_reports.get(w_index)
        return None


def keyboard() -> FakeUsbDevice:
    device = bytes.fromhex("12011002000000403412cdab0001010203 01".replace(" ", ""))
    return FakeUsbDevice(
        device_raw=device,
        configs_raw=[KEYBOARD_CONFIG],
        strings={
            0x0409: {1: "Acme", 2: "Keyboard", 3: "K-0001"},
            0x0407: {1: "Acme", 2: "Tastatur"},
        },
        bos=bytes.fromhex("050f0c0001 07100202000000".replace(" ", "")),
        qualifier=bytes.fromhex("0a060002000000400100"),
        hid_reports={0: KEYBOARD_REPORT},
        id_vendor=0x1234,
        id_product=0xABCD,
    )


def disk() -> FakeUsbDevice:
    device = bytes.fromhex("12010002000000406b1d04010001000000 01".replace(" ", ""))
    return FakeUsbDevice(device_raw=device, configs_raw=[MASS_STORAGE_CONFIG], busid="1-2")


Handler = Callable[[CmdSubmit], RetSubmit | None]


@dataclass
class FakeServer:
    """A USB/IP server whose URB behaviour each test scripts.

    ``handler`` answers a CMD_SUBMIT with a RET_SUBMIT or ``None`` to hold it; held URBs
    are answered by ``release`` or unlinked by CMD_UNLINK (``complete_on_unlink`` sends the
    RET_SUBMIT first, as a device that finished just before the unlink arrived).
    """

    devices: list[FakeUsbDevice]
    busy: set[str] = field(default_factory=set)
    handler: Handler | None = None
    trickle: bool = False
    complete_on_unlink: bool = False
    ignore_unlinks: bool = False
    received: list[Message] = field(default_factory=list)
    held: dict[int, CmdSubmit] = field(default_factory=dict)
    _stream: trio.abc.Stream | None = None
    _conn: Connection | None = None
    _device: FakeUsbDevice | None = None

    async def serve(self, stream: trio.abc.Stream) -> None:
        self._stream, self._conn = stream, Connection(Role.DEVICE)
        try:
            while (message := await self._next()) is not None:
                self.received.append(message)
                await self._answer(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def serve_until_import(self, stream: trio.abc.Stream) -> None:
        """Answer the import, then never read again (a server whose reader is stuck)."""
        self._stream, self._conn = stream, Connection(Role.DEVICE)
        message = await self._next()
        assert message is not None
        await self._answer(message)
        await trio.sleep_forever()

    async def _next(self) -> Message | None:
        assert self._conn is not None
        assert self._stream is not None
        while (event := self._conn.next_event()) is NEED_DATA:
            self._conn.receive_data(await self._stream.receive_some(65536))
        return None if event is CLOSED else event  # type: ignore[return-value]

    async def send(self, message: Message) -> None:
        assert self._conn is not None
        assert self._stream is not None
        data = self._conn.send(message)
        if self.trickle:
            for i in range(len(data)):
                await self._stream.send_all(data[i : i + 1])
        else:
            await self._stream.send_all(data)

    async def _answer(self, message: Message) -> None:
        match message:
            case DevlistRequest():
                entries = tuple(
                    ExportedDevice(d.record(), (InterfaceInfo(3, 1, 1),)) for d in self.devices
                )
                await self.send(DevlistReply(entries))
            case ImportRequest(busid=busid):
                await self._import(busid)
            case CmdSubmit():
                await self._submit(message)
            case CmdUnlink(seqnum=seq, unlink_seqnum=target):
                if self.ignore_unlinks:
                    return
                held = self.held.pop(target, None)
                if held is not None and self.complete_on_unlink:
                    await self.send(self.default(held))
                status = (
                    -errno.ECONNRESET if held is not None and not self.complete_on_unlink else 0
                )
                await self.send(RetUnlink(seq, status))

    async def _import(self, busid: str) -> None:
        found = [d for d in self.devices if d.busid == busid]
        if busid in self.busy:
            await self.send(ImportReply(OpStatus.DEV_BUSY))
        elif not found:
            await self.send(ImportReply(OpStatus.NODEV))
        else:
            self._device = found[0]
            await self.send(ImportReply(0, found[0].record()))

    async def _submit(self, cmd: CmdSubmit) -> None:
        ret = self.handler(cmd) if self.handler is not None else self.default(cmd)
        if ret is None:
            self.held[cmd.seqnum] = cmd
        else:
            await self.send(ret)

    async def release(self, seqnum: int, ret: RetSubmit | None = None) -> None:
        cmd = self.held.pop(seqnum)
        await self.send(ret or self.default(cmd))

    def default(self, cmd: CmdSubmit) -> RetSubmit:
        """Control requests from the device's descriptors; bulk IN echoes the seqnum."""
        if cmd.ep == 0:
            assert self._device is not None
            status, data = self._device.control(SetupPacket.parse(cmd.setup))
            return RetSubmit(cmd.seqnum, status, len(data), data)
        if cmd.direction == Direction.IN:
            data = cmd.seqnum.to_bytes(4, "big")[: cmd.transfer_buffer_length]
            return RetSubmit(cmd.seqnum, 0, len(data), data)
        return RetSubmit(cmd.seqnum, 0, cmd.transfer_buffer_length)
