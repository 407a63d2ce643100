"""A packet-level USB device behind a USB/IP server, for testing USB/IP clients.

``FakeRemote`` serves one device over our own sans-I/O ``Connection(Role.DEVICE)``. It
completes URBs the way a host controller under ``usbip-host`` would, packets following
``_packets``:

- IN: each endpoint has a stream of packets the device model feeds (``send_in``, ``feed``).
  The oldest IN URB is an ``InTransfer`` filled from it: it ends at a short packet (a
  zero-length one included) or when full, babble completes it with -EOVERFLOW. Packets wait
  in the device until an IN URB asks for them, as they wait in a device's FIFO.
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

Serving, logging and waiting are ``DeviceConnection``'s: every message received is logged
with its trio time (``received``), every answer too (``sent``); ``wait_until`` waits, without
polling, for a condition on that state.
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from usbip_gadget.protocol import (
    CmdSubmit,
    CmdUnlink,
    Direction,
    ImportReply,
    ImportRequest,
    Message,
    OpStatus,
    RetSubmit,
    RetUnlink,
    UsbDevice,
)
from usbip_gadget.testing._connection import DeviceConnection, endpoint_address
from usbip_gadget.testing._packets import (
    STALL_MARK,
    STALLED,
    ControlHandler,
    EndpointQueue,
    InTransfer,
    Reply,
    Stall,
    packets_of,
)
from usbip_gadget.usb import (
    DeviceSnapshot,
    EndpointDescriptor,
    FeatureSelector,
    Request,
    RequestType,
    SetupPacket,
)

ECONNRESET = -errno.ECONNRESET
OutHandler = Callable[[int, bytes], None]


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise ValueError(what)


@dataclass
class RemoteEndpoint:
    """One endpoint of the remote device, as the device and its host controller hold it."""

    descriptor: EndpointDescriptor
    queue: EndpointQueue = field(init=False)  # the device's side
    urbs: deque[CmdSubmit] = field(default_factory=deque)
    transfer: InTransfer | None = None  # the oldest IN URB's packets so far
    frozen: bool = False  # the controller's queue after an -EPIPE, until usb_clear_halt
    peak: int = 0  # the most URBs ever queued at once

    def __post_init__(self) -> None:
        self.queue = EndpointQueue(self.descriptor.max_packet_size)

    @property
    def address(self) -> int:
        return self.descriptor.b_endpoint_address

    @property
    def max_packet(self) -> int:
        return self.queue.max_packet

    @property
    def is_in(self) -> bool:
        return self.descriptor.is_in

    @property
    def packets(self) -> deque[bytes | Stall]:
        """IN packets (and stalls) the device has not sent yet."""
        return self.queue.items

    @property
    def halted(self) -> bool:
        return self.queue.halted


class FakeRemote(DeviceConnection):
    """One USB device exported over USB/IP; see the module docstring."""

    def __init__(self, snapshot: DeviceSnapshot, *, busid: str = "1-1") -> None:
        super().__init__()
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
        self.controls: list[tuple[SetupPacket, bytes]] = []  # every ep0 request, in order
        self.set_configurations: list[int] = []
        self.clear_halts: list[int] = []
        self.out_urbs: dict[int, list[bytes]] = {a: [] for a in self.endpoints if a < 0x80}
        self.held_controls: dict[int, CmdSubmit] = {}
        self.errors: list[str] = []

    # -- the device model's side -----------------------------------------------------------

    def endpoint(self, address: int) -> RemoteEndpoint:
        return self.endpoints[address]

    def feed(self, address: int, *packets: bytes) -> None:
        """Packets the device sends on IN endpoint ``address``, as they are."""
        ep = self.endpoint(address)
        _check(ep.is_in, f"0x{address:02x} is not an IN endpoint")
        for packet in packets:
            _check(len(packet) <= ep.max_packet, f"{len(packet)}-byte packet on 0x{address:02x}")
        ep.queue.feed(*packets)
        self._process(ep)

    def send_in(self, address: int, data: bytes, *, zlp: bool = False) -> None:
        """One transfer's data as packets (with a ZLP after whole packets if ``zlp``)."""
        self.feed(address, *packets_of(data, self.endpoint(address).max_packet, zlp=zlp))

    def halt(self, address: int) -> None:
        """The device stalls ``address``: IN after the packets already fed, OUT at once."""
        ep = self.endpoint(address)
        if ep.is_in:
            ep.queue.feed(STALL_MARK)
        else:
            ep.queue.halted = True
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
                ep.queue.halted = ep.frozen = False
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
            self.send(RetSubmit(cmd.seqnum, STALLED))
            return
        self.clear_halts.append(address)
        ep.queue.halted = ep.frozen = False
        self.send(RetSubmit(cmd.seqnum))
        self._process(ep)

    def _answer_control(self, cmd: CmdSubmit, reply: bytes | Reply) -> None:
        if reply is Reply.HOLD:
            self.held_controls[cmd.seqnum] = cmd
        elif reply is Reply.STALL:
            self.send(RetSubmit(cmd.seqnum, STALLED))
        elif cmd.direction == Direction.IN:
            data = reply[: cmd.transfer_buffer_length]
            self.send(RetSubmit(cmd.seqnum, 0, len(data), data))
        else:
            self.send(RetSubmit(cmd.seqnum, 0, len(cmd.data)))

    def _submit(self, cmd: CmdSubmit) -> None:
        ep = self.endpoints.get(endpoint_address(cmd))
        if ep is None:
            self.errors.append(f"URB for a missing endpoint 0x{endpoint_address(cmd):02x}")
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
                    ep.transfer = None  # what it had collected is lost with it
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
                self._complete(ep, STALLED)
            elif self.hold_out:
                return
            else:
                cmd = ep.urbs.popleft()
                self.out_urbs[ep.address].append(cmd.data)
                self.send(RetSubmit(cmd.seqnum, 0, len(cmd.data)))
                self.on_out(ep.address, cmd.data)

    def _in_step(self, ep: RemoteEndpoint) -> bool:
        """Fill the oldest IN URB from the device's packets; False if it is still open."""
        if ep.transfer is None:
            ep.transfer = InTransfer(ep.urbs[0].transfer_buffer_length, ep.max_packet)
        status = ep.queue.fill(ep.transfer)
        if status is None:
            return False
        self._complete(ep, status)
        return True

    def _complete(self, ep: RemoteEndpoint, status: int) -> None:
        cmd = ep.urbs.popleft()
        data = bytes(ep.transfer.data) if ep.transfer is not None else b""
        ep.transfer = None
        if status == STALLED:
            ep.frozen = True
        length = len(data) if ep.is_in else (len(cmd.data) if status == 0 else 0)
        self.send(RetSubmit(cmd.seqnum, status, length, data))


__all__ = ["FakeRemote", "RemoteEndpoint"]
