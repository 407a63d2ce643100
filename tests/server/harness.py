"""The server under test: fake devices, connections over in-memory streams, a raw client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
import trio.testing

from tests.usb.vectors import KEYBOARD_CONFIG, MASS_STORAGE_CONFIG, MASS_STORAGE_DEVICE
from usbip_gadget._groups import collapse_single
from usbip_gadget.client import RemoteDevice, open_remote_device
from usbip_gadget.protocol import (
    CLOSED,
    NEED_DATA,
    Connection,
    ImportReply,
    ImportRequest,
    Message,
    OpStatus,
    Role,
)
from usbip_gadget.server import Selection, ServeOptions, Server
from usbip_gadget.testing import FakeDevice, FakeSource
from usbip_gadget.usb import DeviceSnapshot, Speed

MemoryStream = trio.StapledStream[trio.testing.MemorySendStream, trio.testing.MemoryReceiveStream]

#: Short bounded calls so that unlinks and unplugs are seen within milliseconds.
FAST = ServeOptions(slice_timeout=0.02, control_timeout=0.5, send_timeout=5.0)

KEYBOARD_DEVICE = bytes.fromhex("12011002000000083412cdab0001010203 01".replace(" ", ""))
HUB_DEVICE = bytes.fromhex("12010002090001406b1d02000001000000 01".replace(" ", ""))
HUB_CONFIG = bytes.fromhex(
    "0902190001010080 00 0904000001090000 00 0705810304000c".replace(" ", "")
)

DISK_IN, DISK_OUT, KEYS_IN = 0x81, 0x02, 0x81


def disk(busid: str = "1-1", *, devnum: int = 2) -> FakeDevice:
    """A high-speed flash drive (Bulk-Only mass storage: bulk 0x81 and 0x02, 512 bytes)."""
    strings = {0x0409: {1: "Acme", 2: "Disk", 3: "0001"}}
    snapshot = DeviceSnapshot.from_raw(
        busid, Speed.HIGH, MASS_STORAGE_DEVICE, (MASS_STORAGE_CONFIG,),
        lang_ids=(0x0409,), strings=strings,
    )  # fmt: skip
    return FakeDevice(snapshot, devnum=devnum, drivers={0: "usb-storage"})


def keyboard(busid: str = "1-2", *, devnum: int = 3) -> FakeDevice:
    """A full-speed boot keyboard (interrupt IN 0x81, 8 bytes)."""
    snapshot = DeviceSnapshot.from_raw(busid, Speed.FULL, KEYBOARD_DEVICE, (KEYBOARD_CONFIG,))
    return FakeDevice(snapshot, devnum=devnum, drivers={0: "usbhid"})


def hub(busid: str = "1-3") -> FakeDevice:
    snapshot = DeviceSnapshot.from_raw(busid, Speed.HIGH, HUB_DEVICE, (HUB_CONFIG,))
    return FakeDevice(snapshot, devnum=4)


def select_all(*devices: FakeDevice) -> Selection:
    return Selection.of(busids=[d.busid for d in devices])


@dataclass
class Bed:
    """A server on fake devices; each ``connect`` is a new client connection."""

    devices: list[FakeDevice]
    server: Server
    nursery: trio.Nursery
    log: list[str] = field(default_factory=list)
    done: dict[str, trio.Event] = field(default_factory=dict)

    def connect(self, peer: str = "client") -> MemoryStream:
        client, server_end = trio.testing.memory_stream_pair()
        done = self.done[peer] = trio.Event()

        async def handle() -> None:
            await self.server.handle(server_end, peer)
            done.set()

        self.nursery.start_soon(handle)
        return client

    @asynccontextmanager
    async def imported(self, busid: str, peer: str = "client") -> AsyncIterator[RemoteDevice]:
        stream = self.connect(peer)
        async with open_remote_device(stream, busid, timeout=5) as remote:
            yield remote
        await stream.aclose()

    def lines(self, word: str) -> list[str]:
        return [line for line in self.log if word in line]


@asynccontextmanager
async def bed(
    *devices: FakeDevice,
    selection: Selection | None = None,
    options: ServeOptions = FAST,
) -> AsyncIterator[Bed]:
    log: list[str] = []
    chosen = selection if selection is not None else select_all(*devices)
    server = Server(FakeSource(devices), chosen, options=options, log=log.append)
    with collapse_single():
        async with trio.open_nursery() as nursery:
            yield Bed(list(devices), server, nursery, log)
            nursery.cancel_scope.cancel()


class RawClient:
    """A client that sends exactly the messages (or bytes) a test gives it."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = Connection(Role.HOST)

    async def send(self, message: Message) -> None:
        await self.stream.send_all(self.conn.send(message))

    async def receive(self) -> Message | None:
        """The next message; None when the server closes the connection."""
        while (event := self.conn.next_event()) is NEED_DATA:
            self.conn.receive_data(await self.stream.receive_some(65536))
        return None if event is CLOSED else event  # type: ignore[return-value]

    async def import_(self, busid: str) -> ImportReply:
        await self.send(ImportRequest(busid))
        reply = await self.receive()
        assert isinstance(reply, ImportReply)
        assert reply.status == OpStatus.OK
        return reply

    async def closed(self) -> bool:
        """Whether the server closed the connection (reading what is left)."""
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                return True
