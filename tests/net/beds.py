"""What the network tests share: ``serve`` over mutual TLS on a free localhost port, on a
device source that counts what it is asked, and a log that can be waited on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import trio

from tests.net.certs import Certs
from tests.server.harness import disk
from usbip_gadget._groups import collapse_single
from usbip_gadget._net import Transport
from usbip_gadget.protocol import ExportedDevice
from usbip_gadget.server import Selection, ServeOptions, serve
from usbip_gadget.testing import FakeDevice, FakeSource

LOOPBACK = "127.0.0.1"


class CountingSource(FakeSource):
    """Counts what the server asks of its devices: a refused peer must cost none of it."""

    def __init__(self, devices: list[FakeDevice]) -> None:
        super().__init__(devices)
        self.listings = 0
        self.opened: list[str] = []

    def devices(self) -> list[ExportedDevice]:
        self.listings += 1
        return super().devices()

    def open(self, busid: str) -> FakeDevice:
        self.opened.append(busid)
        return super().open(busid)


class Log(list[str]):
    """A log to pass as ``log=``: the lines, and a way to wait for one."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = trio.Event()

    def __call__(self, line: str) -> None:
        self.append(line)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, text: str) -> None:
        while not any(text in line for line in self):
            await self._changed.wait()


@dataclass
class Served:
    port: int
    source: CountingSource
    log: Log
    listings_at_start: int

    def refusals(self) -> list[str]:
        return [line for line in self.log if line.startswith("refused: ")]

    def untouched(self) -> bool:
        """No device listed or opened since ``serve`` started."""
        return self.source.listings == self.listings_at_start and not self.source.opened


@asynccontextmanager
async def served(
    certs: Certs, *, server: str = "server", handshake_timeout: float = 5.0
) -> AsyncIterator[Served]:
    """``serve`` over mutual TLS on a free localhost port, exporting a fake disk at 1-1."""
    source, log = CountingSource([disk()]), Log()
    transport = Transport(tls=certs.tls(server, server_side=True))
    serving = partial(
        serve, source, Selection.of(busids=["1-1"]), host=LOOPBACK, port=0, log=log,
        transport=transport, options=ServeOptions(handshake_timeout=handshake_timeout),
    )  # fmt: skip
    with collapse_single():
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serving)
            yield Served(port, source, log, source.listings)
            nursery.cancel_scope.cancel()
