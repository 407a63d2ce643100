"""One data endpoint of ``FakeGadget``: packets between the gadget and ``FakeHost``.

Packets follow ``_packets``: writes and the host's OUT transfers are cut with ``packets_of``,
the host's IN transfers collect them as an ``InTransfer``. Unlike a device's stall in a packet
stream, a gadget's halt takes effect at once (``usb_ep_set_halt``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import trio

from usbip_gadget._errors import GadgetError
from usbip_gadget.gadget import (
    EndpointShutdown,
    PacketReader,
    QueuedWrite,
    one_read_at_a_time,
    runs,
    write_on_wait,
)
from usbip_gadget.testing._host import HostBabble, HostError, HostStall
from usbip_gadget.testing._packets import BABBLE, InTransfer, packets_of
from usbip_gadget.usb import EndpointDescriptor, TransferType


@dataclass(eq=False)
class _Owner:
    """The packets of one gadget write (IN) or one host transfer (OUT) not yet taken."""

    remaining: int


@dataclass(frozen=True, slots=True)
class _Packet:
    data: bytes
    owner: _Owner


class FakeEndpoint:
    """One data endpoint: a queue of packets between the gadget and the host.

    IN: ``write`` queues packets that ``FakeHost.transfer_in`` takes, collecting them like a
    host controller URB until a short packet or its length (a packet that does not fit is
    ``HostBabble``); packets of successive writes form one stream. OUT: ``transfer_out``
    queues packets that ``read`` takes until a short packet or ``length`` rounded up to
    wMaxPacketSize; what it got beyond ``length`` is returned by the next read alone (f_fs's
    read buffer). Gadget I/O waits while the function is disabled; a DISABLE fails it with
    ``EndpointShutdown`` and drops queued packets, halts and buffered data. Gadget calls on
    one endpoint run one at a time (f_fs's epfile mutex), and so do host transfers.
    Isochronous endpoints behave like bulk ones here, except that they cannot halt.
    """

    def __init__(self, descriptor: EndpointDescriptor, *, aio: bool = True) -> None:
        self._descriptor = descriptor
        self._aio = aio  # False: one read or write at a time, like GadgetFS's blocking files
        self._size = max(1, descriptor.max_packet_size)
        self._packets: deque[_Packet] = deque()
        self._leftover = b""
        self._enabled = False
        self._halted = False
        self._generation = 0  # bumped by every disable: I/O started before it is shut down
        self._lot = trio.lowlevel.ParkingLot()  # woken on every change
        self._lock = trio.Lock()
        self._host_lock = trio.Lock()

    @property
    def descriptor(self) -> EndpointDescriptor:
        """The remote endpoint this one replays."""
        return self._descriptor

    @property
    def address(self) -> int:
        """bEndpointAddress, as the host and the SETUP events name it (VIRTUAL_ADDR)."""
        return self._descriptor.b_endpoint_address

    @property
    def enabled(self) -> bool:
        """True while the function is enabled (configured, between ENABLE and DISABLE)."""
        return self._enabled

    @property
    def halted(self) -> bool:
        """True while the endpoint stalls the host's transfers."""
        return self._halted

    # -- gadget side -----------------------------------------------------------------------

    async def read(self, length: int) -> bytes:
        """OUT: one transfer from the host (see the class docstring)."""
        if self._descriptor.is_in:
            await self._wrong_direction("read")
        async with self._lock:
            generation = await self._wait_enabled()
            if self._leftover:
                data, self._leftover = self._leftover[:length], self._leftover[length:]
                return data
            # Packets come whole, so this reads ``length`` rounded up to wMaxPacketSize.
            collected = bytearray()
            while True:
                packet = await self._take(lambda: self._check_gadget(generation))
                collected += packet
                if len(packet) < self._size or len(collected) >= length:
                    break
            self._leftover = bytes(collected[length:])
            return bytes(collected[:length])

    async def write(self, data: bytes) -> None:
        """IN: queue ``data`` as packets and return once the host has taken them all."""
        if not self._descriptor.is_in:
            await self._wrong_direction("write")
        async with self._lock:
            generation = await self._wait_enabled()
            owner = self._queue(data, zero_packet=False)
            await self._wait_taken(owner, lambda: self._check_gadget(generation))

    def queue_write(self, data: bytes) -> QueuedWrite:
        """IN: queue ``data`` as packets now (an AIO request); waiting holds no lock."""
        if not self._aio or not self._descriptor.is_in or not self._enabled:
            return write_on_wait(self, data)  # halts, or waits for the function, as write does
        return _FakeQueued(self, self._queue(data, zero_packet=False), self._generation)

    def packet_reader(self, limit: int) -> AbstractAsyncContextManager[PacketReader]:
        """OUT: each ``take`` gives the packets the host has queued, up to ``limit``."""
        if not self._aio:
            return one_read_at_a_time(self)
        return _fake_reader(self, max(1, limit))

    async def _take_packets(self, limit: int) -> list[bytes]:
        # Queued reads hold no lock while they wait (AIO requests do not hold f_fs's epfile
        # mutex), so a halt meanwhile takes effect at once.
        if self._descriptor.is_in:
            await self._wrong_direction("read")
        generation = await self._wait_enabled()

        def check() -> None:
            self._check_gadget(generation)

        packets = [await self._take(check)]
        while len(packets) < limit and self._packets and not self._halted:
            packets.append(await self._take(check))
        return runs(packets, self._size, limit * self._size)

    async def halt(self) -> None:
        """Stall the endpoint until the host clears the halt; waits for the function enabled."""
        if self._descriptor.transfer_type == TransferType.ISOCHRONOUS:
            await trio.lowlevel.checkpoint()
            raise GadgetError(f"endpoint 0x{self.address:02x} is isochronous: it cannot halt")
        async with self._lock:
            await self._wait_enabled()
            self.host_set_halt(True)

    async def _wrong_direction(self, what: str) -> None:
        """f_fs: I/O against the endpoint's direction halts it and fails (-EBADMSG)."""
        await self.halt()
        raise GadgetError(f"{what} on endpoint 0x{self.address:02x} halted it (wrong direction)")

    async def _wait_enabled(self) -> int:
        while not self._enabled:
            await self._lot.park()
        return self._generation

    def _check_gadget(self, generation: int) -> None:
        if self._generation != generation:
            raise EndpointShutdown(f"endpoint 0x{self.address:02x} was disabled")

    # -- host side (FakeHost) --------------------------------------------------------------

    async def host_in(self, length: int) -> bytes:
        """An IN URB: packets until a short one or ``length`` bytes."""
        async with self._host_lock:
            generation = self._host_start()
            transfer = InTransfer(length, self._size)
            while True:
                packet = await self._take(lambda: self._check_host(generation))
                room = transfer.room
                status = transfer.add(packet)
                if status == BABBLE:
                    raise HostBabble(f"{len(packet)}-byte packet, {room} left")
                if status is not None:
                    return bytes(transfer.data)

    async def host_out(self, data: bytes, *, zero_packet: bool) -> None:
        """An OUT URB: queue its packets and wait until the gadget has taken them."""
        async with self._host_lock:
            generation = self._host_start()
            owner = self._queue(data, zero_packet=zero_packet)
            await self._wait_taken(owner, lambda: self._check_host(generation))

    def _host_start(self) -> int:
        if not self._enabled:
            raise HostError(f"endpoint 0x{self.address:02x} is not enabled: not configured")
        self._check_host(self._generation)
        return self._generation

    def _check_host(self, generation: int) -> None:
        if self._generation != generation:
            raise HostError(f"endpoint 0x{self.address:02x} was disabled")
        if self._halted:
            raise HostStall(f"endpoint 0x{self.address:02x} is halted")

    def host_set_halt(self, halted: bool) -> None:
        self._halted = halted
        self._lot.unpark_all()

    # -- packets ---------------------------------------------------------------------------

    def _queue(self, data: bytes, *, zero_packet: bool) -> _Owner:
        packets = packets_of(data, self._size, zlp=zero_packet)
        owner = _Owner(len(packets))
        self._packets.extend(_Packet(packet, owner) for packet in packets)
        self._lot.unpark_all()
        return owner

    async def _take(self, check: Callable[[], None]) -> bytes:
        """The next packet; ``check`` raises when the wait must end in an error.

        Nothing gets through a halted endpoint: the UDC stalls the host's tokens.
        """
        while True:
            check()
            if self._packets and not self._halted:
                packet = self._packets.popleft()
                packet.owner.remaining -= 1
                self._lot.unpark_all()
                return packet.data
            await self._lot.park()

    async def _wait_taken(self, owner: _Owner, check: Callable[[], None]) -> None:
        """Wait until ``owner``'s packets are all taken; on error drop those left."""
        try:
            while owner.remaining:
                check()
                await self._lot.park()
        finally:
            if owner.remaining:
                self._packets = deque(p for p in self._packets if p.owner is not owner)

    # -- the function (FakeGadget) ---------------------------------------------------------

    def _enable(self) -> None:
        self._enabled = True
        self._lot.unpark_all()

    def _disable(self) -> None:
        """usb_ep_disable: in-flight requests end with -ESHUTDOWN, the state is reset."""
        self._enabled = self._halted = False
        self._generation += 1
        self._packets.clear()
        self._leftover = b""
        self._lot.unpark_all()


class _FakeQueued:
    queued = True

    def __init__(self, endpoint: FakeEndpoint, owner: _Owner, generation: int) -> None:
        self._endpoint = endpoint
        self._owner = owner
        self._generation = generation

    async def wait(self) -> None:
        endpoint = self._endpoint
        await endpoint._wait_taken(self._owner, lambda: endpoint._check_gadget(self._generation))

    def cancel(self) -> None:
        endpoint, owner = self._endpoint, self._owner
        if owner.remaining:
            endpoint._packets = deque(p for p in endpoint._packets if p.owner is not owner)
            owner.remaining = 0


class _FakeReader:
    def __init__(self, endpoint: FakeEndpoint, limit: int) -> None:
        self._endpoint = endpoint
        self._limit = limit

    async def take(self) -> list[bytes]:
        return await self._endpoint._take_packets(self._limit)

    def discard(self) -> int:
        return 0  # packets stay with the host until taken: there is nothing ahead to drop


@asynccontextmanager
async def _fake_reader(endpoint: FakeEndpoint, limit: int) -> AsyncIterator[PacketReader]:
    yield _FakeReader(endpoint, limit)


__all__ = ["FakeEndpoint"]
