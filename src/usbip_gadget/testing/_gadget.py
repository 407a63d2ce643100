"""An in-memory gadget backend that behaves like composite.c + FunctionFS + a UDC.

``FakeGadget`` implements ``GadgetBackend`` as FunctionFS would with the flags VIRTUAL_ADDR |
ALL_CTRL_RECIP | CONFIG0_SETUP; ``FakeGadget.host`` (``FakeHost``) drives it from the host's
side. ep0 follows drivers/usb/gadget/function/f_fs.c:

- Events merge as in ``__ffs_event_add`` (so at most four wait): a SETUP drops an unread
  SETUP, a SUSPEND an unread SUSPEND, a RESUME unread SUSPENDs and RESUMEs; BIND, UNBIND,
  ENABLE and DISABLE drop all but SUSPEND and RESUME (an unread BIND or DISABLE included).
- A SETUP read by ``events()`` is pending until ``reply``, ``receive`` or ``stall``; any new
  event cancels it, and the next ep0 call raises ``GadgetError`` once (-EIDRM). ``reply`` on
  an OUT SETUP or ``receive`` on an IN one stalls it and raises ``GadgetError`` (-EL2HLT);
  with nothing pending they raise ``GadgetError`` (-ESRCH). ``events()`` with a SETUP pending
  raises ``GadgetError``: on the real ep0 that read would be the data stage.

Endpoint-recipient requests are matched by the whole address here; f_fs matches the number of
the address ``usb_ep_autoconfig`` chose, which may differ from the one VIRTUAL_ADDR shows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import trio

from usbip_gadget._errors import FunctionFsUnsupported, GadgetError
from usbip_gadget.gadget import (
    EndpointShutdown,
    Ep0Event,
    Ep0EventType,
    PacketReader,
    QueuedWrite,
    Remap,
    one_read_at_a_time,
    runs,
    write_on_wait,
)
from usbip_gadget.gadget.functionfs import check_expressible
from usbip_gadget.testing._host import (
    DEFAULT_HOST_TIMEOUT,
    Control,
    FakeHost,
    HostBabble,
    HostError,
    HostStall,
    HostTimeout,
    host_view,
)
from usbip_gadget.usb import Configuration, DeviceSnapshot, EndpointDescriptor, TransferType

_PM_EVENTS = (Ep0EventType.SUSPEND, Ep0EventType.RESUME)


def _survives(old: Ep0EventType, new: Ep0EventType) -> bool:
    """Whether an unread ``old`` event stays queued when ``new`` arrives (__ffs_event_add)."""
    if new in (Ep0EventType.SETUP, Ep0EventType.SUSPEND):
        return old != new
    if new == Ep0EventType.RESUME:
        return old not in _PM_EVENTS
    return old in _PM_EVENTS


def _packetize(data: bytes, size: int, *, zero_packet: bool) -> list[bytes]:
    """Full packets and a short last one; one zero-length packet for ``b""``."""
    packets = [data[at : at + size] for at in range(0, len(data), size)] or [b""]
    if zero_packet and data and len(data) % size == 0:
        packets.append(b"")
    return packets


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
            self._set_halt(True)

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

    async def _host_in(self, length: int) -> bytes:
        """An IN URB: packets until a short one or ``length`` bytes."""
        async with self._host_lock:
            generation = self._host_start()
            collected = bytearray()
            while True:
                packet = await self._take(lambda: self._check_host(generation))
                if len(collected) + len(packet) > length:
                    raise HostBabble(f"{len(packet)}-byte packet, {length - len(collected)} left")
                collected += packet
                if len(packet) < self._size or len(collected) == length:
                    return bytes(collected)

    async def _host_out(self, data: bytes, *, zero_packet: bool) -> None:
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

    def _set_halt(self, halted: bool) -> None:
        self._halted = halted
        self._lot.unpark_all()

    # -- packets ---------------------------------------------------------------------------

    def _queue(self, data: bytes, *, zero_packet: bool) -> _Owner:
        packets = _packetize(data, self._size, zero_packet=zero_packet)
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


class FakeGadget:
    """A ``GadgetBackend`` in memory, replaying ``snapshot.configurations[config_index]``.

    ``host`` drives it (``connect()`` first); ``host_remap`` maps remote numbers to what the
    host sees, ``ep0_remap`` to the wIndex of SETUP events. ``FunctionFsUnsupported`` if FunctionFS
    could not express the configuration. See the module docstring for the ep0 rules. With
    ``aio`` False the endpoints take one read or write at a time (GadgetFS's blocking files).
    """

    def __init__(
        self,
        snapshot: DeviceSnapshot,
        *,
        config_index: int = 0,
        host_timeout: float = DEFAULT_HOST_TIMEOUT,
        aio: bool = True,
    ) -> None:
        if not 0 <= config_index < len(snapshot.configurations):
            raise GadgetError(f"the snapshot has no configuration at index {config_index}")
        config = snapshot.configurations[config_index]
        reasons = check_expressible(config)
        if reasons:
            raise FunctionFsUnsupported(reasons)
        self.configuration: Configuration = config
        self._endpoints = tuple(FakeEndpoint(ep, aio=aio) for ep in config.endpoints())
        self._ep0_remap = Remap.for_ep0_events(config, virtual_addr=True)
        self._queue: list[Ep0Event] = []
        self._queued_setup: Control | None = None  # the transfer of the SETUP in _queue
        self._pending: Control | None = None  # read by events(), awaiting its data stage
        self._cancelled = False
        self._lot = trio.lowlevel.ParkingLot()
        view = host_view(snapshot, config)
        self.host_remap: Remap = view.remap
        self.host = FakeHost(self, view, timeout=host_timeout)

    @property
    def name(self) -> str:
        """The kernel interface this stands for."""
        return "fake"

    @property
    def endpoints(self) -> Sequence[FakeEndpoint]:
        """One per remote endpoint, in the configuration's order."""
        return self._endpoints

    @property
    def ep0_remap(self) -> Remap:
        """Remote → the numbering of wIndex in SETUP events."""
        return self._ep0_remap

    @property
    def queued_events(self) -> tuple[Ep0Event, ...]:
        """The events ``events()`` would return now (for tests)."""
        return tuple(self._queue)

    def find_endpoint(self, address: int) -> FakeEndpoint | None:
        """The endpoint with bEndpointAddress ``address``, if there is one."""
        return next((ep for ep in self._endpoints if ep.address == address), None)

    def endpoint(self, address: int) -> FakeEndpoint:
        """The endpoint with bEndpointAddress ``address``; ``GadgetError`` if none."""
        endpoint = self.find_endpoint(address)
        if endpoint is None:
            raise GadgetError(f"no endpoint 0x{address:02x}")
        return endpoint

    # -- ep0 -------------------------------------------------------------------------------

    async def events(self) -> list[Ep0Event]:
        """Wait for events and return all those queued (at least one)."""
        await trio.lowlevel.checkpoint()
        if self._pending is not None:
            raise GadgetError("a SETUP is pending: reply, receive or stall before reading events")
        self._check_cancelled("events")
        while not self._queue:
            await self._lot.park()
        events, self._queue = self._queue, []
        if any(event.type == Ep0EventType.SETUP for event in events):
            self._pending, self._queued_setup = self._queued_setup, None
        return events

    async def reply(self, data: bytes) -> None:
        """IN data stage of the pending SETUP: ``data``, cut to wLength."""
        await trio.lowlevel.checkpoint()
        control = self._take_pending("reply")
        if not control.setup.is_in:
            control.finish(HostStall("the gadget wrote to an OUT request"))
            raise GadgetError("reply to an OUT SETUP: FunctionFS stalls it")
        control.finish(data[: control.setup.w_length])

    async def receive(self) -> bytes:
        """OUT data stage of the pending SETUP: the host's data (``b""`` if none), acked."""
        await trio.lowlevel.checkpoint()
        control = self._take_pending("receive")
        if control.setup.is_in:
            control.finish(HostStall("the gadget read an IN request"))
            raise GadgetError("receive on an IN SETUP: FunctionFS stalls it")
        control.finish(b"")
        return control.data_out

    async def stall(self) -> None:
        """Stall the pending SETUP."""
        await trio.lowlevel.checkpoint()
        self._take_pending("stall").finish(HostStall("the gadget stalled the request"))

    def _check_cancelled(self, what: str) -> None:
        if self._cancelled:
            self._cancelled = False
            raise GadgetError(f"{what}: the SETUP was cancelled by a newer event")

    def _take_pending(self, what: str) -> Control:
        self._check_cancelled(what)
        if self._pending is None:
            raise GadgetError(f"{what}: no SETUP is pending")
        control, self._pending = self._pending, None
        return control

    # -- the function as composite.c drives it (FakeHost) ---------------------------------

    def _add_event(self, kind: Ep0EventType, control: Control | None = None) -> None:
        """__ffs_event_add: cancel the pending SETUP, merge the queue, wake ``events()``."""
        if self._pending is not None:
            self._pending.finish(HostError(f"control transfer aborted by {kind.name}"))
            self._pending, self._cancelled = None, True
        self._queue = [event for event in self._queue if _survives(event.type, kind)]
        kept = any(event.type == Ep0EventType.SETUP for event in self._queue)
        if self._queued_setup is not None and not kept:
            self._queued_setup.finish(HostError(f"SETUP dropped for {kind.name}"))
            self._queued_setup = None
        self._queue.append(Ep0Event(kind, None if control is None else control.setup))
        if control is not None:
            self._queued_setup = control
        self._lot.unpark_all()

    def _set_alt(self) -> None:
        """ffs_func_set_alt(alt 0): endpoints disabled and enabled again, then ENABLE."""
        for endpoint in self._endpoints:
            endpoint._disable()
            endpoint._enable()
        self._add_event(Ep0EventType.ENABLE)

    def _disable_function(self) -> None:
        """ffs_func_disable: endpoints disabled, then DISABLE."""
        for endpoint in self._endpoints:
            endpoint._disable()
        self._add_event(Ep0EventType.DISABLE)


__all__ = [
    "FakeEndpoint",
    "FakeGadget",
    "FakeHost",
    "HostBabble",
    "HostError",
    "HostStall",
    "HostTimeout",
]
