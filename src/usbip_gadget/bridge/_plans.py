"""How long the URBs on each data endpoint are: what the pumps read ahead and read.

A device controller never sees the host's transfer lengths, only packets: a transfer ends at a
short packet or when the host has what it asked for. So the bridge must choose lengths itself.

- ``StreamPlan`` (any endpoint): every URB is one packet long (wMaxPacketSize). The packet
  stream the host sees is then exactly the device's — short packets and zero-length packets
  included — and no URB can wait for data the device will only send after the host acts.
- ``AdaptivePlan`` (bulk endpoints of any other protocol, with ``--bulk-urbs adaptive``): IN
  URBs start one packet long and double, up to 64 KiB, each time the device fills one; a short
  packet brings them back to one packet. A URB the device leaves part-filled for
  ``STUCK_AFTER`` seconds is unlinked, and the endpoint moves one packet per URB from then on.
  That bounds what can be lost — the packets such a URB held, if the server drops an unlinked
  URB's data as Linux ``usbip-host`` does — to one URB per endpoint and session.
- ``BulkOnlyPlan`` (USB Mass Storage Bulk-Only Transport, class 08h protocol 50h): the
  31-byte CBW says how long the data stage is and which way it goes, so one CBW yields the
  whole command at once: the data URB (one transfer of dCBWDataTransferLength) and the CSW
  URB are queued on the remote as soon as the CBW arrives. A command costs one round trip
  instead of three, and its data moves in one URB instead of one per packet.

IN URB lengths are always whole packets: a URB never ends inside a packet, so however the
lengths are chosen the packets the host receives are the device's, in order.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable
from typing import Protocol

import trio

from usbip_gadget.usb import Configuration, EndpointDescriptor, TransferType

MASS_STORAGE_CLASS = 0x08
BULK_ONLY_PROTOCOL = 0x50
BULK_ONLY_RESET = 0xFF
CBW_SIGNATURE = 0x43425355
CBW_LENGTH = 31
_CBW = struct.Struct("<IIIB")  # dCBWSignature, dCBWTag, dCBWDataTransferLength, bmCBWFlags
MAX_URB_LENGTH = 1 << 20  # longer data stages go as several URBs (whole packets each)
ADAPTIVE_MAX = 64 * 1024  # the longest URB AdaptivePlan makes: what one stuck URB can hold
STUCK_AFTER = 0.5  # seconds a guessed multi-packet IN URB may stay unfilled
EXACT, ADAPTIVE = "exact", "adaptive"
BULK_URBS = (EXACT, ADAPTIVE)


def whole_packets(length: int, max_packet: int) -> int:
    """``length`` rounded up to whole packets, at least one packet."""
    packets = max(1, -(-length // max_packet))
    return packets * max_packet


class Plan(Protocol):
    """The lengths of the URBs of one interface's data endpoints."""

    # Seconds after which a multi-packet IN URB not yet filled is taken as stuck (its length
    # was a guess the device did not follow); None when every length is known to be right.
    watchdog: float | None
    # Whether OUT packets are forwarded as they arrive, several URBs in flight, instead of
    # one packet at a time with each URB's result awaited before the next packet is taken.
    pipelined_out: bool

    async def next_in(self, address: int) -> int:
        """The length of the next IN URB to queue on ``address`` (waits until one is due)."""
        ...

    def requeue(self, address: int, lengths: Iterable[int]) -> None:
        """IN URBs unlinked before completing, to queue again first, in order."""
        ...

    def saw_in(self, address: int, requested: int, received: int) -> None:
        """An IN URB of ``requested`` bytes on ``address`` completed with ``received``."""
        ...

    def pin(self, address: int) -> None:
        """A URB on ``address`` was stuck: one packet per URB there from now on."""
        ...

    def next_out(self, address: int) -> int:
        """How much to read from the host on OUT endpoint ``address`` for the next URB."""
        ...

    def saw_out(self, address: int, data: bytes) -> None:
        """The host sent ``data`` on ``address`` (one URB's worth)."""
        ...

    def announced_out(self, address: int) -> bool:
        """Whether the next OUT read on ``address`` is data the host has announced (the
        data-out stage of a Bulk-Only command), so it may be read before the result of the
        URB before it."""
        ...

    def reset(self) -> None:
        """Forget everything expected (the pumps are restarted)."""
        ...


class StreamPlan:
    """One packet per URB, IN URBs queued without end: exact for any protocol."""

    watchdog: float | None = None
    pipelined_out = False

    def __init__(self, endpoints: Iterable[EndpointDescriptor]) -> None:
        self._sizes = {ep.b_endpoint_address: max(1, ep.max_packet_size) for ep in endpoints}

    async def next_in(self, address: int) -> int:
        # No checkpoint: the pump waits for room in its queue anyway, and URBs posted
        # without one in between leave in one send.
        return self._sizes[address]

    def requeue(self, address: int, lengths: Iterable[int]) -> None:
        pass  # every URB is the same: nothing to remember

    def saw_in(self, address: int, requested: int, received: int) -> None:
        pass

    def pin(self, address: int) -> None:
        pass

    def next_out(self, address: int) -> int:
        return self._sizes[address]

    def saw_out(self, address: int, data: bytes) -> None:
        pass

    def announced_out(self, address: int) -> bool:
        return False

    def reset(self) -> None:
        pass


class AdaptivePlan(StreamPlan):
    """Bulk URBs sized by what the device has done (see the module docstring).

    Interrupt endpoints stay one packet per URB.
    """

    watchdog: float | None = STUCK_AFTER
    pipelined_out = True

    def __init__(self, endpoints: Iterable[EndpointDescriptor]) -> None:
        endpoints = list(endpoints)
        super().__init__(endpoints)
        self._packets = dict(self._sizes)
        self._limits = {
            address: whole_packets(ADAPTIVE_MAX, packet) if packet <= ADAPTIVE_MAX else packet
            for address, packet in self._packets.items()
        }
        for ep in endpoints:
            if ep.transfer_type != TransferType.BULK:
                self._limits[ep.b_endpoint_address] = self._packets[ep.b_endpoint_address]
        self._pinned: set[int] = set()

    def saw_in(self, address: int, requested: int, received: int) -> None:
        if address in self._pinned:
            return
        if received < requested:
            self._sizes[address] = self._packets[address]
        else:
            grown = min(2 * requested, self._limits[address])
            self._sizes[address] = max(self._sizes[address], grown)

    def pin(self, address: int) -> None:
        self._pinned.add(address)
        self._sizes[address] = self._packets[address]

    def reset(self) -> None:
        # A device that once left a URB unfilled may do so again: pinned endpoints stay so.
        self._sizes = dict(self._packets)


class BulkOnlyPlan:
    """Bulk-Only Transport: URBs follow the commands (USB MSC BOT 1.0 §5).

    What it holds does not grow with what the host announces: one command's data-in stage
    is a byte count cut into URB lengths as they are asked for, its status one flag, and the
    lengths of unlinked URBs to queue again at most one pump's read-ahead. A short URB ends
    the data stage (the rest is not asked for), and a new CBW drops whatever the command
    before it left: the host has its status, so nothing more of it will come.
    """

    watchdog: float | None = None
    pipelined_out = False

    def __init__(self, bulk_in: EndpointDescriptor, bulk_out: EndpointDescriptor) -> None:
        self.in_address = bulk_in.b_endpoint_address
        self.out_address = bulk_out.b_endpoint_address
        self._in_packet = max(1, bulk_in.max_packet_size)
        self._out_packet = max(1, bulk_out.max_packet_size)
        self._requeued: deque[int] = deque()  # unlinked URBs' lengths, to queue first
        self._data_in = 0  # bytes of the data-in stage not yet queued
        self._status_due = False  # the status URB (CSW) not yet queued
        self._in_added = trio.Event()
        self._data_out = 0  # bytes of a data-out stage still to come from the host
        self._in_chunk = MAX_URB_LENGTH - MAX_URB_LENGTH % self._in_packet
        self._out_chunk = MAX_URB_LENGTH - MAX_URB_LENGTH % self._out_packet
        self.commands = 0

    @property
    def held(self) -> int:
        """How many URB lengths the plan holds now (queued lengths and pending stages)."""
        return len(self._requeued) + bool(self._data_in) + self._status_due

    async def next_in(self, address: int) -> int:
        while not self.held:
            self._in_added = trio.Event()
            await self._in_added.wait()
        if self._requeued:
            return self._requeued.popleft()
        if self._data_in:
            length = min(self._data_in, self._in_chunk)
            self._data_in -= length
            return length
        self._status_due = False
        return self._in_packet

    def requeue(self, address: int, lengths: Iterable[int]) -> None:
        # At most what one pump had queued: lengths come back only from URBs it posted.
        self._requeued.extendleft(reversed(list(lengths)))
        self._in_added.set()

    def saw_in(self, address: int, requested: int, received: int) -> None:
        if received < requested:
            self._data_in = 0  # a short packet ended the data stage: the status is next

    def pin(self, address: int) -> None:
        pass

    def next_out(self, address: int) -> int:
        if self._data_out:
            return min(whole_packets(self._data_out, self._out_packet), self._out_chunk)
        return whole_packets(CBW_LENGTH, self._out_packet)

    def announced_out(self, address: int) -> bool:
        return self._data_out > 0

    def saw_out(self, address: int, data: bytes) -> None:
        if self._data_out:
            self._data_out = max(0, self._data_out - len(data))
            if len(data) % self._out_packet:  # a short packet ends the stage early
                self._data_out = 0
            return
        self._expect(data)

    def _expect(self, cbw: bytes) -> None:
        # The host sends a CBW once it has the status of the command before: drop its rest.
        self._requeued.clear()
        self._data_in = 0
        if len(cbw) != CBW_LENGTH or _CBW.unpack_from(cbw)[0] != CBW_SIGNATURE:
            # Not a valid CBW: the device will stall; read one packet in case it does not.
            self._queue_in(0)
            return
        _signature, _tag, length, flags = _CBW.unpack_from(cbw)
        self.commands += 1
        if length and flags & 0x80:
            self._queue_in(whole_packets(length, self._in_packet))
        else:
            self._data_out = length
            self._queue_in(0)

    def _queue_in(self, data_in: int) -> None:
        """Queue a command's data-in stage of ``data_in`` bytes (whole packets), then its
        status."""
        self._data_in = data_in
        self._status_due = True
        self._in_added.set()

    def reset(self) -> None:
        self._requeued.clear()
        self._data_in = 0
        self._status_due = False
        self._data_out = 0


def plans_for(config: Configuration, bulk_urbs: str = EXACT) -> dict[int, Plan]:
    """Each data endpoint address of ``config`` → the plan that sizes its URBs.

    ``bulk_urbs`` is ``exact`` (one packet per URB unless the protocol says more) or
    ``adaptive`` (``AdaptivePlan`` where no protocol plan applies).
    """
    if bulk_urbs not in BULK_URBS:
        raise ValueError(f"unknown bulk URB policy {bulk_urbs!r}")
    plans: dict[int, Plan] = {}
    for alt in config.alt_settings:
        if alt.b_alternate_setting:
            continue
        bot = _bulk_only(alt.b_interface_class, alt.b_interface_protocol, alt.endpoints)
        plan: Plan
        if bot is not None:
            plan = bot
        elif bulk_urbs == ADAPTIVE:
            plan = AdaptivePlan(alt.endpoints)
        else:
            plan = StreamPlan(alt.endpoints)
        for ep in alt.endpoints:
            plans.setdefault(ep.b_endpoint_address, plan)
    # Endpoints only other alternate settings have move one packet per URB.
    others = [
        ep
        for alt in config.alt_settings
        for ep in alt.endpoints
        if alt.b_alternate_setting and ep.b_endpoint_address not in plans
    ]
    if others:
        stream = StreamPlan(others)
        for ep in others:
            plans.setdefault(ep.b_endpoint_address, stream)
    return plans


def _bulk_only(
    cls: int, protocol: int, endpoints: Iterable[EndpointDescriptor]
) -> BulkOnlyPlan | None:
    if (cls, protocol) != (MASS_STORAGE_CLASS, BULK_ONLY_PROTOCOL):
        return None
    bulk = [ep for ep in endpoints if ep.transfer_type == TransferType.BULK]
    ins = [ep for ep in bulk if ep.b_endpoint_address & 0x80]
    outs = [ep for ep in bulk if not ep.b_endpoint_address & 0x80]
    if len(ins) != 1 or len(outs) != 1:
        return None
    return BulkOnlyPlan(ins[0], outs[0])


def describe_plans(config: Configuration, bulk_urbs: str = EXACT) -> list[str]:
    """One line per data endpoint: how its URBs are sized (what ``plan`` prints)."""
    plans = plans_for(config, bulk_urbs)
    lines = []
    for ep in sorted(config.endpoints(), key=lambda e: e.b_endpoint_address):
        address = ep.b_endpoint_address
        if address not in plans:
            continue
        plan = plans[address]
        kind = f"0x{address:02x} {ep.transfer_type.name.lower()} {'IN' if ep.is_in else 'OUT'}"
        lines.append(f"{kind}: {_urbs_of(plan, ep)}")
    return lines


def _urbs_of(plan: Plan, ep: EndpointDescriptor) -> str:
    packet = max(1, ep.max_packet_size)
    if isinstance(plan, BulkOnlyPlan):
        return "Bulk-Only Transport: each command's stages as its CBW announces them"
    adaptive = isinstance(plan, AdaptivePlan) and ep.transfer_type == TransferType.BULK
    if adaptive and ep.is_in:
        return (
            f"adaptive, {packet} to {whole_packets(ADAPTIVE_MAX, packet)} bytes per URB"
            f" (a URB left part-filled for {STUCK_AFTER:g} s is unlinked)"
        )
    if plan.pipelined_out and not ep.is_in:
        return (
            f"packets forwarded as they arrive, up to {ADAPTIVE_MAX // 1024} KiB per URB"
            " (a stall reaches the host after the packets already queued)"
        )
    if ep.is_in:
        return f"exact, one packet ({packet} bytes) per URB"
    return "exact, one packet per URB, each URB's result awaited before the next"
