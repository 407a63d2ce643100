"""What the bridge needs from a gadget backend, whatever kernel interface is behind it.

A backend is a gadget that is already plugged into a USB device controller and replays one
remote configuration. It reports the host's requests and state changes as ep0 events
(``Ep0Event``: BIND, UNBIND, ENABLE, DISABLE, SETUP, SUSPEND, RESUME), answers the data
stage of the pending SETUP, and gives one ``GadgetEndpoint`` per remote endpoint.

Both the FunctionFS backend and the in-memory ``FakeGadget`` implement it; the bridge is
tested against the fake and, in the kernel tier, runs on the real one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from usbip_gadget.gadget._events import Ep0Event
from usbip_gadget.gadget._remap import Remap
from usbip_gadget.usb import EndpointDescriptor


class GadgetEndpoint(Protocol):
    """One data endpoint of the gadget, named by the remote device's descriptor."""

    @property
    def descriptor(self) -> EndpointDescriptor:
        """The remote endpoint this one replays (address, type, wMaxPacketSize)."""
        ...

    async def read(self, length: int) -> bytes:
        """OUT: one transfer from the host, ending at a short packet or at ``length`` bytes.

        A zero-length packet from the host gives ``b""``. ``EndpointShutdown`` when the
        host disables the endpoint.
        """
        ...

    async def write(self, data: bytes) -> None:
        """IN: queue ``data`` for the host and return once the host has taken it all.

        The data go out as full packets and a short last one; ``b""`` sends a zero-length
        packet. ``EndpointShutdown`` when the host disables the endpoint.
        """
        ...

    async def halt(self) -> None:
        """Stall the endpoint; the host's CLEAR_FEATURE(ENDPOINT_HALT) clears it."""
        ...

    def queue_write(self, data: bytes) -> QueuedWrite:
        """IN: queue ``data`` now, behind the writes queued before it; ``wait`` on the result
        returns once the host has taken it all, as ``write`` does. Backends that cannot queue
        writes make the write when it is waited for (callers wait in order)."""
        ...

    def packet_reader(self, limit: int) -> AbstractAsyncContextManager[PacketReader]:
        """OUT: the host's packets one by one, with up to ``limit`` reads queued meanwhile.

        While the block runs, the controller accepts up to ``limit`` packets ahead of the
        bridge (it acknowledges them to the host); leaving it cancels what is still queued.
        Backends that cannot queue reads give one packet per ``read``.
        """
        ...


class QueuedWrite(Protocol):
    """A write queued on an IN endpoint (``GadgetEndpoint.queue_write``)."""

    # False when the data reach the controller only once ``wait`` is called.
    queued: bool

    async def wait(self) -> None:
        """Return once the host has taken the data; ``EndpointShutdown`` if disabled first."""
        ...

    def cancel(self) -> None:
        """Withdraw it if the host has not taken it yet (nothing to wait for afterwards)."""
        ...


class _WriteOnWait:
    """A ``QueuedWrite`` for backends that move one write at a time."""

    queued = False

    def __init__(self, endpoint: GadgetEndpoint, data: bytes) -> None:
        self._endpoint = endpoint
        self._data = data

    async def wait(self) -> None:
        await self._endpoint.write(self._data)

    def cancel(self) -> None:
        pass


def write_on_wait(endpoint: GadgetEndpoint, data: bytes) -> QueuedWrite:
    """``queue_write`` for backends whose endpoint files take one write at a time."""
    return _WriteOnWait(endpoint, data)


class PacketReader(Protocol):
    """One-packet reads kept queued on an OUT endpoint (``GadgetEndpoint.packet_reader``)."""

    async def take(self) -> list[bytes]:
        """The packets received since the last call, at least one, in order, as runs.

        A run is consecutive full packets with the short packet that ends it, joined; a
        zero-length packet is ``b""`` of its own; full packets at the end form a run too. So
        each run is one OUT URB that makes the device receive the same packets.
        ``EndpointShutdown`` when the host disables the endpoint.
        """
        ...

    def discard(self) -> int:
        """Drop the packets received and not yet taken; how many were dropped."""
        ...


class _OneRead:
    """A ``PacketReader`` that reads one packet per call."""

    def __init__(self, endpoint: GadgetEndpoint) -> None:
        self._endpoint = endpoint
        self._packet = max(1, endpoint.descriptor.max_packet_size)

    async def take(self) -> list[bytes]:
        return [await self._endpoint.read(self._packet)]

    def discard(self) -> int:
        return 0


def runs(packets: Sequence[bytes], packet: int, limit: int) -> list[bytes]:
    """``packets`` (each at most ``packet`` bytes) as runs (``PacketReader.take``) of at most
    ``limit`` bytes."""
    found: list[bytes] = []
    run: list[bytes] = []
    size = 0
    for data in packets:
        if data:
            run.append(data)
            size += len(data)
        if len(data) < packet or size + packet > limit:
            if run:
                found.append(b"".join(run))
                run, size = [], 0
            if not data:
                found.append(b"")
    if run:
        found.append(b"".join(run))
    return found


@asynccontextmanager
async def one_read_at_a_time(endpoint: GadgetEndpoint) -> AsyncIterator[PacketReader]:
    """``packet_reader`` for backends whose endpoint files take one read at a time."""
    yield _OneRead(endpoint)


class GadgetBackend(Protocol):
    """A plugged gadget: ep0 events and their data stage, and the data endpoints."""

    @property
    def name(self) -> str:
        """The kernel interface, for the user ("functionfs")."""
        ...

    @property
    def endpoints(self) -> Sequence[GadgetEndpoint]:
        """One per remote endpoint, in the configuration's order."""
        ...

    @property
    def ep0_remap(self) -> Remap:
        """Remote → the numbering of wIndex in SETUP events (``inverse()`` for the way back)."""
        ...

    async def events(self) -> list[Ep0Event]:
        """Wait for the next ep0 events (at least one)."""
        ...

    async def reply(self, data: bytes) -> None:
        """Data stage of the pending IN SETUP: send ``data`` (at most wLength bytes)."""
        ...

    async def receive(self) -> bytes:
        """OUT SETUP: read its wLength bytes of data, or acknowledge one without data."""
        ...

    async def stall(self) -> None:
        """Stall the pending SETUP."""
        ...


__all__ = [
    "GadgetBackend",
    "GadgetEndpoint",
    "PacketReader",
    "QueuedWrite",
    "one_read_at_a_time",
    "runs",
    "write_on_wait",
]
