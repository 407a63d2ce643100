"""A packet-level USB device behind a USB/IP server, for the bridge tests.

``FakeRemote`` serves one device over our own sans-I/O ``Connection(Role.DEVICE)``. It
completes URBs the way a host controller under ``usbip-host`` would:

- IN: each endpoint has a stream of packets the device model feeds (``send_in``, ``feed``).
  The oldest IN URB collects packets until a short packet (a zero-length one included) or
  until it is full; a packet larger than the room left completes it with -EOVERFLOW. Packets
  wait in the device until an IN URB asks for them, as they wait in a device's FIFO.
- OUT: each URB is recorded with its exact bytes (``out_urbs``), completed in full, and then
  handed to the device model (``on_out``). ``hold_out`` makes the device NAK: OUT URBs stay
  queued until ``release_out``.
- Halts: ``halt`` puts a stall into an IN endpoint's packet stream (packets fed before it are
  delivered first) or halts an OUT endpoint at once. The URB that meets the stall completes
  with -EPIPE and the endpoint's queue freezes, as the host controller's does, until
  CLEAR_FEATURE(ENDPOINT_HALT) arrives on ep0 (usbip-host turns it into ``usb_clear_halt``).
- ep0: SET_CONFIGURATION and CLEAR_FEATURE(ENDPOINT_HALT) are handled here and recorded;
  everything else goes to ``on_control``, which answers with data, ``Reply.STALL`` or
  ``Reply.HOLD`` (never answered: only an unlink ends it).
- CMD_UNLINK of a queued URB answers RET_UNLINK -ECONNRESET (and no RET_SUBMIT follows); of
  one already answered, RET_UNLINK 0.

Every message received is logged with its trio time (``received``), every answer too
(``sent``); ``wait_until`` waits, without polling, for a condition on that state.

``host_reads`` is the same host controller run directly on a packet stream: what a host
with the device plugged straight in would read.
"""

from __future__ import annotations

import errno
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import trio

from usbip_gadget.protocol import (
    CLOSED,
    NEED_DATA,
    CmdSubmit,
    CmdUnlink,
    Connection,
    Direction,
    ImportReply,
    ImportRequest,
    Message,
    OpStatus,
    RetSubmit,
    RetUnlink,
    Role,
    Sentinel,
    UsbDevice,
)
from usbip_gadget.usb import (
    DeviceSnapshot,
    EndpointDescriptor,
    FeatureSelector,
    Request,
    RequestType,
    SetupPacket,
)

EPIPE = -errno.EPIPE
EOVERFLOW = -errno.EOVERFLOW
ECONNRESET = -errno.ECONNRESET


class Reply(Enum):
    """A device model's non-data answers to a control request."""

    STALL = "stall"
    HOLD = "hold"


class _Stall:
    """The device stalls here in an IN packet stream."""


STALL_MARK = _Stall()
ControlHandler = Callable[[SetupPacket, bytes], bytes | Reply]
OutHandler = Callable[[int, bytes], None]


def packets_of(data: bytes, max_packet: int, *, zlp: bool = False) -> list[bytes]:
    """``data`` as a device sends it: full packets, a short last one, a ZLP if asked."""
    packets = [data[at : at + max_packet] for at in range(0, len(data), max_packet)] or [b""]
    if zlp and data and len(data) % max_packet == 0:
        packets.append(b"")
    return packets


def host_reads(
    packets: Iterable[bytes], max_packet: int, lengths: Iterable[int]
) -> list[tuple[int, bytes]]:
    """(length, data) of the IN transfers a directly attached host reads from ``packets``.

    One transfer per element of ``lengths`` until the packets run out; a transfer that meets
    a packet larger than its room left reads ``b"babble"``. The packets must end short.
    """
    stream = deque(packets)
    reads = []
    for length in lengths:
        if not stream:
            break
        collected = b""
        while True:
            packet = stream.popleft()
            if len(packet) > length - len(collected):
                collected = b"babble"
                break
            collected += packet
            if len(packet) < max_packet or len(collected) == length:
                break
        reads.append((length, collected))
    return reads


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


@dataclass
class RemoteEndpoint:
    """One endpoint of the remote device, as the device and its host controller hold it."""

    descriptor: EndpointDescriptor
    packets: deque[bytes | _Stall] = field(default_factory=deque)
    urbs: deque[CmdSubmit] = field(default_factory=deque)
    collected: bytearray = field(default_factory=bytearray)
    halted: bool = False
    frozen: bool = False  # the controller's queue after an -EPIPE, until usb_clear_halt
    peak: int = 0  # the most URBs ever queued at once

    @property
    def address(self) -> int:
        return self.descriptor.b_endpoint_address

    @property
    def max_packet(self) -> int:
        return max(1, self.descriptor.max_packet_size)

    @property
    def is_in(self) -> bool:
        return self.descriptor.is_in


@dataclass(frozen=True)
class Logged:
    """A message the server received or sent, and the trio time it did."""

    time: float
    message: Message


class FakeRemote:
    """One USB device exported over USB/IP; see the module docstring."""

    def __init__(self, snapshot: DeviceSnapshot, *, busid: str = "1-1") -> None:
        self.snapshot = snapshot
        self.busid = busid
        self.endpoints = {
            ep.b_endpoint_address: RemoteEndpoint(ep)
            for config in snapshot.configurations
            for ep in config.endpoints()
        }
        self.on_control: ControlHandler = lambda setup, data: Reply.STALL
        self.on_out: OutHandler = lambda address, data: None
        self.hold_out = False
        self.received: list[Logged] = []
        self.sent: list[Logged] = []
        self.controls: list[tuple[SetupPacket, bytes]] = []  # every ep0 request, in order
        self.set_configurations: list[int] = []
        self.clear_halts: list[int] = []
        self.out_urbs: dict[int, list[bytes]] = {a: [] for a in self.endpoints if a < 0x80}
        self.held_controls: dict[int, CmdSubmit] = {}
        self.errors: list[str] = []
        self._conn = Connection(Role.DEVICE)
        self._outbox, self._outgoing = trio.open_memory_channel[bytes](math.inf)
        self._changed = trio.lowlevel.ParkingLot()
        self._stream: trio.abc.Stream | None = None
        self._reading = trio.Event()
        self._reading.set()
        self._receiving = trio.CancelScope()

    # -- serving ---------------------------------------------------------------------------

    async def serve(self, stream: trio.abc.Stream) -> None:
        """Answer the import, then URBs, until the connection ends."""
        self._stream = stream
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write, stream)
            await self._read(stream)
            nursery.cancel_scope.cancel()

    async def _read(self, stream: trio.abc.Stream) -> None:
        try:
            while True:
                event = self._conn.next_event()
                if event is NEED_DATA:
                    await self._reading.wait()
                    if not self._reading.is_set():  # paused while this task was waking
                        continue
                    with trio.CancelScope() as self._receiving:  # pause() cancels it
                        self._conn.receive_data(await stream.receive_some(65536))
                    continue
                if event is CLOSED:
                    return
                assert not isinstance(event, Sentinel)
                self.received.append(Logged(trio.current_time(), event))
                self._dispatch(event)
                self._changed.unpark_all()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _write(self, stream: trio.abc.Stream) -> None:
        async for data in self._outgoing:
            try:
                await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def close(self) -> None:
        """Close the connection, as a server that goes away does."""
        assert self._stream is not None
        await self._stream.aclose()

    def pause(self) -> None:
        """Stop reading from the connection (with a lockstep stream, the client's sends block)."""
        self._reading = trio.Event()
        self._receiving.cancel()

    def resume(self) -> None:
        self._reading.set()

    def send(self, message: Message) -> None:
        """Answer (checked by our own protocol rules, unless the test means to break them)."""
        self._outbox.send_nowait(self._conn.send(message))
        self.sent.append(Logged(trio.current_time(), message))
        self._changed.unpark_all()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds; it is checked after every change."""
        while not condition():
            await self._changed.park()

    # -- the device model's side -----------------------------------------------------------

    def endpoint(self, address: int) -> RemoteEndpoint:
        return self.endpoints[address]

    def feed(self, address: int, *packets: bytes) -> None:
        """Packets the device sends on IN endpoint ``address``, as they are."""
        ep = self.endpoint(address)
        _check(ep.is_in, f"0x{address:02x} is not an IN endpoint")
        for packet in packets:
            _check(len(packet) <= ep.max_packet, f"{len(packet)}-byte packet on 0x{address:02x}")
        ep.packets.extend(packets)
        self._process(ep)

    def send_in(self, address: int, data: bytes, *, zlp: bool = False) -> None:
        """One transfer's data as packets (with a ZLP after whole packets if ``zlp``)."""
        self.feed(address, *packets_of(data, self.endpoint(address).max_packet, zlp=zlp))

    def halt(self, address: int) -> None:
        """The device stalls ``address``: IN after the packets already fed, OUT at once."""
        ep = self.endpoint(address)
        if ep.is_in:
            ep.packets.append(STALL_MARK)
        else:
            ep.halted = True
        self._process(ep)

    def release_out(self) -> None:
        """Stop NAKing: queued OUT URBs complete."""
        self.hold_out = False
        for ep in self.endpoints.values():
            self._process(ep)

    def answer_control(self, seqnum: int, reply: bytes | Reply = b"") -> None:
        """Answer a held control request now."""
        cmd = self.held_controls.pop(seqnum)
        self._answer_control(cmd, reply)

    def complete_raw(self, seqnum: int, ret: RetSubmit) -> None:
        """Answer a queued URB with ``ret`` as it is (a hostile device)."""
        for ep in self.endpoints.values():
            for cmd in list(ep.urbs):
                if cmd.seqnum == seqnum:
                    ep.urbs.remove(cmd)
        self.send(ret)

    # -- queries ---------------------------------------------------------------------------

    def submits(self, address: int | None = None) -> list[CmdSubmit]:
        """The CMD_SUBMITs received (on endpoint ``address`` if given), in order."""
        found = [m.message for m in self.received if isinstance(m.message, CmdSubmit)]
        if address is None:
            return found
        return [cmd for cmd in found if _address(cmd) == address]

    def unlinks(self) -> list[CmdUnlink]:
        return [m.message for m in self.received if isinstance(m.message, CmdUnlink)]

    def answered(self, seqnum: int) -> bool:
        """Whether a RET_SUBMIT for ``seqnum`` was sent."""
        return any(
            isinstance(m.message, RetSubmit) and m.message.seqnum == seqnum for m in self.sent
        )

    def queued(self, address: int) -> list[int]:
        """Seqnums of the URBs queued on ``address``, oldest first."""
        return [cmd.seqnum for cmd in self.endpoint(address).urbs]

    # -- messages --------------------------------------------------------------------------

    def _dispatch(self, message: Message) -> None:
        match message:
            case ImportRequest(busid=busid):
                if busid != self.busid:
                    self.send(ImportReply(OpStatus.NODEV))
                else:
                    self.send(ImportReply(OpStatus.OK, self._record()))
            case CmdSubmit(ep=0):
                self._control(message)
            case CmdSubmit():
                self._submit(message)
            case CmdUnlink():
                self._unlink(message)
            case _:
                self.errors.append(f"unexpected {message}")

    def _record(self) -> UsbDevice:
        device = self.snapshot.device
        return UsbDevice(
            f"/sys/devices/platform/fake/usb1/{self.busid}", self.busid, 1, 2,
            int(self.snapshot.speed), device.id_vendor, device.id_product, device.bcd_device,
            device.b_device_class, device.b_device_sub_class, device.b_device_protocol, 0,
            len(self.snapshot.configurations),
            self.snapshot.configurations[0].b_num_interfaces,
        )  # fmt: skip

    def _control(self, cmd: CmdSubmit) -> None:
        setup = SetupPacket.parse(cmd.setup)
        self.controls.append((setup, cmd.data))
        standard = (setup.bm_request_type, setup.b_request)
        if standard == (RequestType.OUT, Request.SET_CONFIGURATION):
            self.set_configurations.append(setup.w_value)
            for ep in self.endpoints.values():  # usb_set_configuration resets every endpoint
                ep.halted = ep.frozen = False
            self.send(RetSubmit(cmd.seqnum))
        elif standard == (RequestType.ENDPOINT, Request.CLEAR_FEATURE) and (
            setup.w_value == FeatureSelector.ENDPOINT_HALT
        ):
            self._clear_halt(cmd, setup.w_index & 0xFF)
        else:
            self._answer_control(cmd, self.on_control(setup, cmd.data))

    def _clear_halt(self, cmd: CmdSubmit, address: int) -> None:
        ep = self.endpoints.get(address)
        if ep is None:
            self.send(RetSubmit(cmd.seqnum, EPIPE))
            return
        self.clear_halts.append(address)
        ep.halted = ep.frozen = False
        self.send(RetSubmit(cmd.seqnum))
        self._process(ep)

    def _answer_control(self, cmd: CmdSubmit, reply: bytes | Reply) -> None:
        if reply is Reply.HOLD:
            self.held_controls[cmd.seqnum] = cmd
        elif reply is Reply.STALL:
            self.send(RetSubmit(cmd.seqnum, EPIPE))
        elif cmd.direction == Direction.IN:
            data = reply[: cmd.transfer_buffer_length]
            self.send(RetSubmit(cmd.seqnum, 0, len(data), data))
        else:
            self.send(RetSubmit(cmd.seqnum, 0, len(cmd.data)))

    def _submit(self, cmd: CmdSubmit) -> None:
        ep = self.endpoints.get(_address(cmd))
        if ep is None:
            self.errors.append(f"URB for a missing endpoint 0x{_address(cmd):02x}")
            self.send(RetSubmit(cmd.seqnum, -errno.EINVAL))
            return
        ep.urbs.append(cmd)
        ep.peak = max(ep.peak, len(ep.urbs))
        self._process(ep)

    def _unlink(self, unlink: CmdUnlink) -> None:
        target = unlink.unlink_seqnum
        if target in self.held_controls:
            del self.held_controls[target]
            self.send(RetUnlink(unlink.seqnum, ECONNRESET))
            return
        for ep in self.endpoints.values():
            found = [cmd for cmd in ep.urbs if cmd.seqnum == target]
            if found:
                if ep.urbs[0] is found[0]:
                    ep.collected.clear()  # what it had collected is lost with it
                ep.urbs.remove(found[0])
                self.send(RetUnlink(unlink.seqnum, ECONNRESET))
                self._process(ep)
                return
        self.send(RetUnlink(unlink.seqnum, 0))  # answered already

    # -- the host controller ---------------------------------------------------------------

    def _process(self, ep: RemoteEndpoint) -> None:
        """Complete what the endpoint's queue can complete now."""
        while ep.urbs and not ep.frozen:
            if ep.is_in:
                if not self._in_step(ep):
                    return
            elif ep.halted:
                self._complete(ep, EPIPE)
            elif self.hold_out:
                return
            else:
                cmd = ep.urbs.popleft()
                self.out_urbs[ep.address].append(cmd.data)
                self.send(RetSubmit(cmd.seqnum, 0, len(cmd.data)))
                self.on_out(ep.address, cmd.data)

    def _in_step(self, ep: RemoteEndpoint) -> bool:
        """Move one packet (or the stall) into the oldest IN URB; False if none is there."""
        if ep.halted:
            self._complete(ep, EPIPE)
            return True
        if not ep.packets:
            return False
        packet = ep.packets.popleft()
        if isinstance(packet, _Stall):
            ep.halted = True
            self._complete(ep, EPIPE)
            return True
        room = ep.urbs[0].transfer_buffer_length - len(ep.collected)
        if len(packet) > room:
            self._complete(ep, EOVERFLOW)
            return True
        ep.collected += packet
        if len(packet) < ep.max_packet or len(packet) == room:
            self._complete(ep, 0)
        return True

    def _complete(self, ep: RemoteEndpoint, status: int) -> None:
        cmd = ep.urbs.popleft()
        data, ep.collected = bytes(ep.collected), bytearray()
        if status == EPIPE:
            ep.frozen = True
        length = len(data) if ep.is_in else (len(cmd.data) if status == 0 else 0)
        self.send(RetSubmit(cmd.seqnum, status, length, data))


def _address(cmd: CmdSubmit) -> int:
    """The endpoint address a CMD_SUBMIT names; 0 for control URBs either way."""
    return cmd.ep | (0x80 if cmd.direction == Direction.IN and cmd.ep else 0)


def lengths(cmds: Sequence[CmdSubmit]) -> list[int]:
    """transfer_buffer_length of each command."""
    return [cmd.transfer_buffer_length for cmd in cmds]
