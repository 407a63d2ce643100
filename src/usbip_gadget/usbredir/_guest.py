"""The usb-guest side of usbredir, spoken as USB/IP: the link a ``RemoteDevice`` talks through.

``send`` takes the USB/IP commands a host controller sends (CMD_SUBMIT, CMD_UNLINK) and
gives the usbredir bytes that do the same; ``next_event`` turns what the usb-host sends
into the replies a USB/IP server would send (RET_SUBMIT, RET_UNLINK, and OP_REQ_UNEXPORT
for a device_disconnect). A URB's seqnum is its usbredir id. What usbredir does differently
is done here, as QEMU's usb-redir device does it:

- SET_CONFIGURATION and SET_INTERFACE become set_configuration and set_alt_setting, which
  make the usb-host claim the interfaces again and send the new endpoint table; as control
  packets they would leave its endpoint table stale.
- Interrupt IN is a stream: the first IN URB on an interrupt endpoint starts interrupt
  receiving, and each interrupt_packet the usb-host then sends completes the oldest URB
  waiting on that endpoint, or waits for one (``INTERRUPT_BACKLOG`` at most, oldest dropped).
- An unlink is cancel_data_packet; the usb-host answers it with the packet's own reply,
  status cancelled, which becomes the RET_UNLINK.

Some answers need no usb-host: an interrupt IN URB served from the backlog, the unlink of a
URB waiting for the interrupt stream, a URB usbredir cannot carry. Those are put in
``local_events`` by ``send``, for the caller to take after it has recorded the URB.
"""

from __future__ import annotations

import errno
from collections import deque
from dataclasses import dataclass, field

from usbip_gadget._errors import LocalProtocolError
from usbip_gadget.protocol import (
    CmdSubmit,
    CmdUnlink,
    Direction,
    Message,
    RetSubmit,
    RetUnlink,
    Sentinel,
    UnexportReply,
    UnexportRequest,
    UsbDevice,
)
from usbip_gadget.usb import Request, RequestType, SetupPacket
from usbip_gadget.usbredir._connection import Connection
from usbip_gadget.usbredir._constants import (
    LINK_CAPS,
    MAX_BULK_LENGTH,
    Cap,
    EndpointType,
    PacketType,
    Role,
    Speed,
    Status,
)
from usbip_gadget.usbredir._messages import (
    AltSettingStatus,
    BulkPacket,
    CancelDataPacket,
    ConfigurationStatus,
    ControlPacket,
    DeviceConnect,
    DeviceDisconnect,
    DeviceDisconnectAck,
    EndpointEntry,
    EpInfo,
    InterfaceInfo,
    InterruptPacket,
    InterruptReceivingStatus,
    Packet,
    SetAltSetting,
    SetConfiguration,
    StartInterruptReceiving,
)

#: Interrupt IN packets kept for URBs not posted yet; beyond it the oldest is dropped.
INTERRUPT_BACKLOG = 64
_SHORT_BULK_MAX = 0xFFFF  # a bulk length without 32bits_bulk_length

# The errno a Linux host controller gives for each outcome (what usbip-host would send).
_ERRNO: dict[int, int] = {
    Status.SUCCESS: 0,
    Status.CANCELLED: -errno.ECONNRESET,
    Status.INVAL: -errno.EINVAL,
    Status.IOERROR: -errno.EPROTO,
    Status.STALL: -errno.EPIPE,
    Status.TIMEOUT: -errno.ETIMEDOUT,
    Status.BABBLE: -errno.EOVERFLOW,
}
# Linux enum usb_device_speed; an unknown speed is taken as full speed, as QEMU takes it.
_LINUX_SPEED: dict[int, int] = {Speed.LOW: 1, Speed.FULL: 2, Speed.HIGH: 3, Speed.SUPER: 5}
# The packet type that answers each request (the data packets answer in their own type).
_REPLY_TYPE = {
    PacketType.SET_CONFIGURATION: PacketType.CONFIGURATION_STATUS,
    PacketType.SET_ALT_SETTING: PacketType.ALT_SETTING_STATUS,
}
_SET_CONFIGURATION = (RequestType.OUT | RequestType.DEVICE, Request.SET_CONFIGURATION)
_SET_INTERFACE = (RequestType.OUT | RequestType.INTERFACE, Request.SET_INTERFACE)

LocalEvent = RetSubmit | RetUnlink
LinkEvent = RetSubmit | RetUnlink | UnexportRequest | Sentinel


def errno_of(status: int) -> int:
    """The negated errno of a usbredir status; an unknown one is an I/O error."""
    return _ERRNO.get(status, -errno.EPROTO)


@dataclass(slots=True)
class _Stream:
    """An interrupt IN endpoint: URBs waiting for its packets, and packets waiting for URBs."""

    started: bool = False
    urbs: deque[tuple[int, int]] = field(default_factory=deque)  # (seqnum, length)
    packets: deque[InterruptPacket] = field(default_factory=deque)


class GuestLink:
    """One usbredir connection as a USB/IP host controller sees it (see the module)."""

    def __init__(self, *, caps: frozenset[int] = LINK_CAPS) -> None:
        self._conn = Connection(Role.GUEST, caps=caps)
        self.connected: DeviceConnect | None = None
        self.interfaces: InterfaceInfo | None = None
        self.local_events: deque[LocalEvent] = deque()
        self._events: deque[LinkEvent] = deque()
        self._endpoints: dict[int, EndpointEntry] = {}
        # seqnum -> (whether it is an IN transfer, the packet type its reply must have)
        self._pending: dict[int, tuple[bool, PacketType]] = {}
        self._resetting: set[int] | None = None  # interfaces whose setting is being changed
        self._unlinks: dict[int, int] = {}  # seqnum -> the CMD_UNLINK seqnum naming it
        self._streams: dict[int, _Stream] = {}
        self._restart: set[int] = set()

    # ------------------------------------------------------------ start

    def hello(self) -> bytes:
        """The guest's hello, sent first."""
        return self._conn.hello()

    def device_record(self, path: str) -> UsbDevice:
        """The connected device as a USB/IP device record (after device_connect)."""
        dev = self.connected
        if dev is None:
            raise LocalProtocolError("no device is connected yet")
        interfaces = self.interfaces.interfaces if self.interfaces else ()
        return UsbDevice(
            path=path, busid="usbredir", busnum=0, devnum=0,
            speed=_LINUX_SPEED.get(dev.speed, _LINUX_SPEED[Speed.FULL]),
            id_vendor=dev.vendor_id, id_product=dev.product_id,
            bcd_device=dev.device_version_bcd or 0, b_device_class=dev.device_class,
            b_device_sub_class=dev.device_subclass, b_device_protocol=dev.device_protocol,
            b_configuration_value=0, b_num_configurations=1, b_num_interfaces=len(interfaces),
        )  # fmt: skip

    def endpoint_type(self, address: int) -> int:
        """The transfer type the usb-host gives endpoint ``address`` now."""
        entry = self._endpoints.get(address)
        return entry.type if entry is not None else EndpointType.INVALID

    # ------------------------------------------------------------ receiving

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add received bytes; ``b""`` means the usb-host closed the connection."""
        self._conn.receive_data(data)

    def bytes_wanted(self) -> int:
        return self._conn.bytes_wanted()

    def next_event(self) -> LinkEvent:
        """The next reply, ``NEED_DATA`` or ``CLOSED``."""
        events = self._events
        while not events:
            packet = self._conn.next_event()
            if isinstance(packet, Sentinel):
                return packet
            self._receive(packet)
        return events.popleft()

    def _receive(self, packet: Packet) -> None:
        match packet:
            case InterruptPacket() if packet.endpoint & 0x80:  # never asked for: a stream's
                self._streamed(packet)
            case BulkPacket() | ControlPacket() | InterruptPacket():
                self._replied(packet, packet.status, packet.length, packet.data)
            case ConfigurationStatus() | AltSettingStatus():
                self._replied(packet, packet.status, 0, b"")
            case InterruptReceivingStatus(status=status, endpoint=endpoint):
                if status not in (Status.SUCCESS, Status.INVAL):  # inval: it runs already
                    self._stream_ended(endpoint, status)
            case _:
                self._described(packet)

    def _described(self, packet: Packet) -> None:
        """What the usb-host says of its device; the rest (hello, streams this side never
        starts) says nothing to a USB/IP host controller."""
        match packet:
            case EpInfo():
                old, self._endpoints = self._endpoints, packet.by_address()
                self._streams_stopped(old)
            case InterfaceInfo():
                self.interfaces = packet
            case DeviceConnect():
                if self.connected is None:
                    self.connected = packet
            case DeviceDisconnect():
                if self.connected is not None:
                    self._events.append(UnexportRequest(self.device_record("usbredir")))

    def _replied(self, packet: Packet, status: int, length: int, data: bytes) -> None:
        seqnum = packet.id
        asked = self._pending.get(seqnum)
        if asked is None or asked[1] is not packet.TYPE:
            return  # an answer to nothing (its URB was given up), or not to what was asked
        del self._pending[seqnum]
        is_in = asked[0]
        unlink = self._unlinks.pop(seqnum, None)
        if unlink is not None and status == Status.CANCELLED and not data:
            self._events.append(RetUnlink(unlink, -errno.ECONNRESET))
            return
        actual = len(data) if is_in else length
        self._events.append(RetSubmit(seqnum, errno_of(status), actual, data))
        if unlink is not None:  # it completed, or moved data, before the cancel took it
            self._events.append(RetUnlink(unlink, 0))

    def _streamed(self, packet: InterruptPacket) -> None:
        stream = self._streams.get(packet.endpoint)
        if stream is None:
            return
        if stream.urbs:
            seqnum, length = stream.urbs.popleft()
            self._events.append(_interrupt_reply(seqnum, length, packet))
            return
        if len(stream.packets) == INTERRUPT_BACKLOG:
            stream.packets.popleft()
        stream.packets.append(packet)

    def _streams_stopped(self, old: dict[int, EndpointEntry]) -> None:
        """A new endpoint table after set_configuration (every stream stopped) or
        set_alt_setting (the streams of that interface stopped): those with URBs waiting
        start again (``take_output``)."""
        resetting, self._resetting = self._resetting, None
        for address, stream in self._streams.items():
            entry = old.get(address)
            if not stream.started or (
                resetting is not None and (entry is None or entry.interface not in resetting)
            ):
                continue
            stream.started = False
            if stream.urbs:
                self._restart.add(address)

    def _stream_ended(self, endpoint: int, status: int) -> None:
        stream = self._streams.get(endpoint)
        if stream is None:
            return
        stream.started = False
        while stream.urbs:
            seqnum, _length = stream.urbs.popleft()
            self._events.append(RetSubmit(seqnum, errno_of(status)))

    # ------------------------------------------------------------ sending

    def send(self, message: Message) -> bytes:
        """The usbredir bytes for a USB/IP command (``b""`` when it is answered locally)."""
        match message:
            case CmdSubmit():
                return self._submit(message)
            case CmdUnlink(seqnum=unlink, unlink_seqnum=target):
                return self._unlink(unlink, target)
            case UnexportReply():
                if self._conn.has(Cap.DEVICE_DISCONNECT_ACK):
                    return self._conn.send(DeviceDisconnectAck())
                return b""
        raise LocalProtocolError(f"{type(message).__name__} has no usbredir form")

    def take_output(self) -> bytes:
        """What the link must send unasked (streams to start again after a new endpoint
        table), for the reader to queue whenever it has read what there was."""
        if not self._restart:
            return b""
        out = []
        for address in sorted(self._restart):
            stream = self._streams[address]
            if stream.urbs and not stream.started:
                stream.started = True
                out.append(self._conn.send(StartInterruptReceiving(address)))
        self._restart.clear()
        return b"".join(out)

    def _submit(self, cmd: CmdSubmit) -> bytes:
        try:
            return self._submit_packet(cmd)
        except LocalProtocolError:  # a field usbredir cannot carry
            self.local_events.append(RetSubmit(cmd.seqnum, -errno.EINVAL))
            return b""

    def _submit_packet(self, cmd: CmdSubmit) -> bytes:
        is_in = cmd.direction == Direction.IN
        if cmd.ep == 0:
            packet: Packet = self._control(cmd, is_in)
        else:
            address = cmd.ep | 0x80 if is_in else cmd.ep
            kind = self.endpoint_type(address)
            length = cmd.transfer_buffer_length if is_in else len(cmd.data)
            if kind == EndpointType.INTERRUPT and is_in:
                return self._interrupt_in(cmd.seqnum, address, length)
            if kind == EndpointType.INTERRUPT:
                packet = InterruptPacket(address, 0, length, cmd.data, id=cmd.seqnum)
            elif kind == EndpointType.BULK and self._bulk_fits(length):
                packet = BulkPacket(address, 0, length, data=cmd.data, id=cmd.seqnum)
            else:  # iso, an endpoint the device does not have, a length too long to carry
                self.local_events.append(RetSubmit(cmd.seqnum, -errno.EINVAL))
                return b""
        data = self._conn.send(packet)
        self._pending[cmd.seqnum] = (is_in, _REPLY_TYPE.get(packet.TYPE, packet.TYPE))
        if packet.TYPE is PacketType.SET_CONFIGURATION:
            self._resetting = None  # a new configuration stops every stream
        elif isinstance(packet, SetAltSetting):
            self._resetting = (self._resetting or set()) | {packet.interface}
        return data

    def _control(self, cmd: CmdSubmit, is_in: bool) -> Packet:
        setup = SetupPacket.parse(cmd.setup)
        request = (setup.bm_request_type, setup.b_request)
        if request == _SET_CONFIGURATION:
            return SetConfiguration(setup.w_value & 0xFF, id=cmd.seqnum)
        if request == _SET_INTERFACE:
            return SetAltSetting(setup.w_index & 0xFF, setup.w_value & 0xFF, id=cmd.seqnum)
        return ControlPacket(
            0x80 if is_in else 0x00, setup.b_request, setup.bm_request_type, 0, setup.w_value,
            setup.w_index, setup.w_length if is_in else len(cmd.data), cmd.data, id=cmd.seqnum,
        )  # fmt: skip

    def _bulk_fits(self, length: int) -> bool:
        if length <= _SHORT_BULK_MAX:
            return True
        return length <= MAX_BULK_LENGTH and self._conn.has(Cap.BULK_LENGTH_32BIT)

    def _interrupt_in(self, seqnum: int, address: int, length: int) -> bytes:
        stream = self._streams.setdefault(address, _Stream())
        if stream.packets:
            self.local_events.append(_interrupt_reply(seqnum, length, stream.packets.popleft()))
            return b""
        stream.urbs.append((seqnum, length))
        if stream.started:
            return b""
        stream.started = True
        return self._conn.send(StartInterruptReceiving(address))

    def _unlink(self, unlink: int, target: int) -> bytes:
        for stream in self._streams.values():
            for entry in stream.urbs:
                if entry[0] == target:
                    stream.urbs.remove(entry)
                    self.local_events.append(RetUnlink(unlink, -errno.ECONNRESET))
                    return b""
        if target not in self._pending:  # answered already: nothing left to cancel
            self.local_events.append(RetUnlink(unlink, 0))
            return b""
        self._unlinks[target] = unlink
        return self._conn.send(CancelDataPacket(id=target))


def _interrupt_reply(seqnum: int, length: int, packet: InterruptPacket) -> RetSubmit:
    """An interrupt IN URB of ``length`` bytes answered by one streamed ``packet``."""
    status = errno_of(packet.status)
    data = packet.data[:length]
    if len(packet.data) > length and status == 0:
        status = -errno.EOVERFLOW
    return RetSubmit(seqnum, status, len(data), data)


__all__ = ["INTERRUPT_BACKLOG", "GuestLink", "LinkEvent", "errno_of"]
