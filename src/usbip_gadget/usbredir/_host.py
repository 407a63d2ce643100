"""The usb-host side of usbredir, spoken as USB/IP: the link a USB/IP server's URB phase
serves a usbredir usb-guest (QEMU's usb-redir device, a SPICE client, ``attach usbredir://``)
through.

``next_event`` turns what the usb-guest sends into the commands a USB/IP client would send
(CMD_SUBMIT, CMD_UNLINK); ``send`` turns the server's replies (RET_SUBMIT, RET_UNLINK) into
the usbredir packets that answer them. Each command gets a seqnum of the link's own, and the
packet it came from is kept to shape its answer. What has no USB/IP command becomes one:

- set_configuration, get_configuration, set_alt_setting and get_alt_setting are the standard
  requests; after a new configuration or alternate setting the usb-host describes the
  interfaces and endpoints again (from ``describe``) before the status;
- reset is the hub's SET_FEATURE(PORT_RESET), as vhci-hcd sends it, answered with nothing;
- interrupt receiving keeps ``STREAM_TRANSFERS`` IN transfers queued on the endpoint and
  sends each completion unasked, as usbredirhost does;
- cancel_data_packet is CMD_UNLINK; a transfer stopped with nothing moved is answered with
  status cancelled, one that moved data with that data.

Answers that are not replies to a command (a stream's status) come out of ``next_event`` as
``bytes`` to write; commands the link makes itself (a stream's next transfer) wait in
``local_events`` for the server to take after each ``send``.
"""

from __future__ import annotations

import errno
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from usbip_gadget._errors import LocalProtocolError, RemoteProtocolError
from usbip_gadget.protocol import (
    CLOSED,
    CmdSubmit,
    CmdUnlink,
    Direction,
    Message,
    Phase,
    RetSubmit,
    RetUnlink,
    Sentinel,
)
from usbip_gadget.usb import Request, RequestType, SetupPacket
from usbip_gadget.usbredir._connection import Connection
from usbip_gadget.usbredir._constants import LINK_CAPS, EndpointType, Role, Status
from usbip_gadget.usbredir._messages import (
    AllocBulkStreams,
    AltSettingStatus,
    BulkPacket,
    BulkStreamsStatus,
    CancelDataPacket,
    ConfigurationStatus,
    ControlPacket,
    DeviceConnect,
    EpInfo,
    GetAltSetting,
    GetConfiguration,
    InterfaceInfo,
    InterruptPacket,
    InterruptReceivingStatus,
    IsoPacket,
    IsoStreamStatus,
    Packet,
    Reset,
    SetAltSetting,
    SetConfiguration,
    StartInterruptReceiving,
    StartIsoStream,
    StopInterruptReceiving,
)

#: IN transfers kept queued on an endpoint while interrupt receiving runs (usbredirhost's).
STREAM_TRANSFERS = 5

_STATUS = {
    0: Status.SUCCESS,
    -errno.ECONNRESET: Status.CANCELLED,
    -errno.ENOENT: Status.CANCELLED,
    -errno.EPIPE: Status.STALL,
    -errno.ETIMEDOUT: Status.TIMEOUT,
    -errno.EOVERFLOW: Status.BABBLE,
    -errno.EINVAL: Status.INVAL,
    -errno.EOPNOTSUPP: Status.INVAL,
}
_GET_CONFIGURATION = SetupPacket(RequestType.IN, Request.GET_CONFIGURATION, 0, 0, 1).pack()
# The hub class's SET_FEATURE(PORT_RESET) to port 1, as vhci-hcd sends it (USB 2.0 §11.24.2).
_PORT_RESET = SetupPacket(
    RequestType.CLASS | RequestType.OTHER, Request.SET_FEATURE, 4, 1, 0
).pack()


@dataclass(frozen=True, slots=True)
class _Streamed:
    """A transfer interrupt receiving keeps queued: its endpoint, and which start of the
    stream it belongs to (a transfer of an earlier start is not the stream's any more)."""

    endpoint: int
    generation: int


@dataclass(slots=True)
class _Stream:
    size: int
    generation: int
    ids: itertools.count[int]


#: The interfaces and endpoints of the device as it is set now.
Describe = Callable[[], tuple[InterfaceInfo, EpInfo]]
HostEvent = CmdSubmit | CmdUnlink | Sentinel | bytes


def status_of(status: int) -> Status:
    """The usbredir status of a negated errno."""
    return _STATUS.get(status, Status.IOERROR)


class HostLink:
    """One usbredir connection as a USB/IP server's URB phase sees it (see the module)."""

    def __init__(self, *, caps: frozenset[int] = LINK_CAPS) -> None:
        self._conn = Connection(Role.HOST, caps=caps)
        self._describe: Describe | None = None
        self.local_events: deque[CmdSubmit | CmdUnlink] = deque()
        self._events: deque[HostEvent] = deque()
        self._seqnums = itertools.count(1)
        self._asked: dict[int, Packet | _Streamed] = {}  # seqnum -> what the command is for
        self._by_id: dict[int, int] = {}  # a data packet's id -> its seqnum
        self._unlinks: dict[int, int] = {}  # CMD_UNLINK seqnum -> the seqnum it names
        self._streams: dict[int, _Stream] = {}
        self._generations = itertools.count(1)
        self._closed = False

    @property
    def phase(self) -> Phase:
        return Phase.CLOSED if self._closed else Phase.URB

    @property
    def guest_ready(self) -> bool:
        """Whether the usb-guest's hello is in: the device may be described from now."""
        return self._conn.peer_caps is not None

    def hello(self) -> bytes:
        return self._conn.hello()

    def connect(self, device: DeviceConnect, describe: Describe) -> bytes:
        """Offer the device: its interfaces and endpoints as ``describe`` gives them now (and
        after each new configuration or alternate setting), then device_connect. After the
        usb-guest's hello (``guest_ready``)."""
        self._describe = describe
        return self.tables() + self._conn.send(device)

    def tables(self) -> bytes:
        """interface_info and ep_info of the device as it is set now."""
        if self._describe is None:
            raise LocalProtocolError("no device is connected")
        interfaces, endpoints = self._describe()
        return self._conn.send(interfaces) + self._conn.send(endpoints)

    # ------------------------------------------------------------ receiving

    def receive_data(self, data: bytes | bytearray) -> None:
        self._conn.receive_data(data)

    def next_event(self) -> HostEvent:
        """The next command or ``bytes`` to write; ``NEED_DATA`` or ``CLOSED``."""
        events = self._events
        while not events:
            packet = self._conn.next_event()
            if isinstance(packet, Sentinel):
                self._closed = self._closed or packet is CLOSED
                return packet
            self._receive(packet)
        return events.popleft()

    def _receive(self, packet: Packet) -> None:
        match packet:
            case ControlPacket():
                direction = Direction.IN if packet.endpoint & 0x80 else Direction.OUT
                setup = SetupPacket(
                    packet.requesttype, packet.request, packet.value, packet.index, packet.length
                )
                self._command(packet, 0, direction, packet.length, packet.data, setup.pack())
            case BulkPacket() | InterruptPacket():
                self._transfer(packet)
            case CancelDataPacket(id=packet_id):
                seqnum = self._by_id.get(packet_id)
                if seqnum is not None:
                    unlink = next(self._seqnums)
                    self._unlinks[unlink] = seqnum
                    self._events.append(CmdUnlink(unlink, 0, seqnum))
            case _:
                self._request(packet)

    def _transfer(self, packet: BulkPacket | InterruptPacket) -> None:
        if packet.TYPE is InterruptPacket.TYPE and packet.endpoint & 0x80:
            raise RemoteProtocolError("interrupt IN is received through interrupt receiving")
        is_in = bool(packet.endpoint & 0x80)
        direction = Direction.IN if is_in else Direction.OUT
        self._command(packet, packet.endpoint & 0x0F, direction, packet.length, packet.data)

    def _request(self, packet: Packet) -> None:
        """The packets that are not data: standard requests, streams, and the rest."""
        match packet:
            case SetConfiguration(configuration=value):
                setup = SetupPacket.set_configuration(value)
                self._command(packet, 0, Direction.OUT, 0, b"", setup.pack())
            case GetConfiguration():
                self._command(packet, 0, Direction.IN, 1, b"", _GET_CONFIGURATION)
            case SetAltSetting(interface=interface, alt=alt):
                setup = SetupPacket(RequestType.INTERFACE, Request.SET_INTERFACE, alt, interface)
                self._command(packet, 0, Direction.OUT, 0, b"", setup.pack())
            case GetAltSetting(interface=interface):
                setup = SetupPacket(
                    RequestType.IN | RequestType.INTERFACE, Request.GET_INTERFACE, 0, interface, 1
                )
                self._command(packet, 0, Direction.IN, 1, b"", setup.pack())
            case Reset():
                self._command(packet, 0, Direction.OUT, 0, b"", _PORT_RESET)
            case StartInterruptReceiving(endpoint=endpoint, id=packet_id):
                self._start_stream(endpoint, packet_id)
            case StopInterruptReceiving(endpoint=endpoint, id=packet_id):
                self._stop_stream(endpoint, packet_id)
            case _:
                self._refused(packet)

    def _refused(self, packet: Packet) -> None:
        """Streams this side does not carry: refused as usbredirhost refuses a bad one."""
        match packet:
            case StartIsoStream(endpoint=endpoint, id=packet_id):
                self._say(IsoStreamStatus(Status.STALL, endpoint, id=packet_id))
            case IsoPacket(endpoint=endpoint):
                self._say(IsoStreamStatus(Status.INVAL, endpoint, id=packet.id))
            case AllocBulkStreams(endpoints=endpoints, id=packet_id):
                self._say(BulkStreamsStatus(endpoints, 0, Status.IOERROR, id=packet_id))
            case _:
                pass  # a second hello, filters, acks: nothing to do

    def _command(
        self,
        packet: Packet,
        ep: int,
        direction: Direction,
        length: int,
        data: bytes,
        setup: bytes = bytes(8),
    ) -> CmdSubmit:
        seqnum = next(self._seqnums)
        self._asked[seqnum] = packet
        if packet.TYPE in (ControlPacket.TYPE, BulkPacket.TYPE, InterruptPacket.TYPE):
            self._by_id[packet.id] = seqnum
        cmd = CmdSubmit(seqnum, 0, direction, ep, length, setup=setup, data=data)
        self._events.append(cmd)
        return cmd

    def _say(self, packet: Packet) -> None:
        self._events.append(self._conn.send(packet))

    # ------------------------------------------------------------ interrupt receiving

    def _start_stream(self, endpoint: int, packet_id: int) -> None:
        entry = self._describe()[1].by_address().get(endpoint) if self._describe else None
        if entry is None or entry.type != EndpointType.INTERRUPT or not endpoint & 0x80:
            self._say(InterruptReceivingStatus(Status.STALL, endpoint, id=packet_id))
            return
        if endpoint in self._streams:
            self._say(InterruptReceivingStatus(Status.INVAL, endpoint, id=packet_id))
            return
        stream = self._streams[endpoint] = _Stream(
            entry.max_packet_size or 64, next(self._generations), itertools.count()
        )
        self._say(InterruptReceivingStatus(Status.SUCCESS, endpoint, id=packet_id))
        for _ in range(STREAM_TRANSFERS):
            self._events.append(self._stream_transfer(endpoint, stream))

    def _stream_transfer(self, endpoint: int, stream: _Stream) -> CmdSubmit:
        seqnum = next(self._seqnums)
        self._asked[seqnum] = _Streamed(endpoint, stream.generation)
        return CmdSubmit(seqnum, 0, Direction.IN, endpoint & 0x0F, stream.size)

    def _stop_stream(self, endpoint: int, packet_id: int) -> None:
        if self._streams.pop(endpoint, None) is not None:
            self._events.extend(self._unlink_stream(endpoint))
        self._say(InterruptReceivingStatus(Status.SUCCESS, endpoint, id=packet_id))

    def _unlink_stream(self, endpoint: int) -> list[CmdUnlink]:
        """CMD_UNLINK for every transfer still queued for ``endpoint``'s streams."""
        unlinks = []
        for seqnum, asked in self._asked.items():
            if isinstance(asked, _Streamed) and asked.endpoint == endpoint:
                unlink = next(self._seqnums)
                self._unlinks[unlink] = seqnum
                unlinks.append(CmdUnlink(unlink, 0, seqnum))
        return unlinks

    # ------------------------------------------------------------ sending

    def send(self, message: Message) -> bytes:
        """The usbredir answer to a server's reply (``b""`` when it needs none)."""
        match message:
            case RetSubmit(seqnum=seqnum):
                asked = self._asked.pop(seqnum, None)
                if asked is None:
                    return b""
                self._forget_id(asked)
                return self._answer(asked, message)
            case RetUnlink(seqnum=unlink, status=status):
                target = self._unlinks.pop(unlink, None)
                asked = self._asked.pop(target, None) if target is not None else None
                if asked is None or status == 0:
                    return b""  # answered by its RET_SUBMIT already
                self._forget_id(asked)
                return self._answer(asked, RetSubmit(unlink, -errno.ECONNRESET))
        raise LocalProtocolError(f"{type(message).__name__} has no usbredir form")

    def _forget_id(self, asked: Packet | _Streamed) -> None:
        if isinstance(asked, ControlPacket | BulkPacket | InterruptPacket):
            self._by_id.pop(asked.id, None)

    def _answer(self, asked: Packet | _Streamed, ret: RetSubmit) -> bytes:
        status, data = status_of(ret.status), ret.data
        if isinstance(asked, _Streamed):
            return self._streamed(asked, status, data)
        match asked:
            case ControlPacket():
                return self._conn.send(ControlPacket(
                    asked.endpoint, asked.request, asked.requesttype, status, asked.value,
                    asked.index, ret.actual_length, data, id=asked.id,
                ))  # fmt: skip
            case BulkPacket():
                return self._conn.send(
                    BulkPacket(asked.endpoint, status, ret.actual_length, data=data, id=asked.id)
                )
            case InterruptPacket():
                length = ret.actual_length
                return self._conn.send(InterruptPacket(asked.endpoint, status, length, id=asked.id))
        return self._standard(asked, status, data)

    def _standard(self, asked: Packet, status: Status, data: bytes) -> bytes:
        match asked:
            case SetConfiguration(configuration=value):
                described = self.tables() if status == Status.SUCCESS else b""
                return described + self._conn.send(ConfigurationStatus(status, value, id=asked.id))
            case GetConfiguration():
                value = data[0] if data else 0
                return self._conn.send(ConfigurationStatus(status, value, id=asked.id))
            case SetAltSetting(interface=interface, alt=alt):
                described = self.tables() if status == Status.SUCCESS else b""
                reply = AltSettingStatus(status, interface, alt, id=asked.id)
                return described + self._conn.send(reply)
            case GetAltSetting(interface=interface):
                alt = data[0] if data else 255
                return self._conn.send(AltSettingStatus(status, interface, alt, id=asked.id))
        return b""  # reset: no answer

    def _streamed(self, asked: _Streamed, status: Status, data: bytes) -> bytes:
        endpoint = asked.endpoint
        stream = self._streams.get(endpoint)
        if stream is None or stream.generation != asked.generation:
            return b""  # stopped meanwhile, or a transfer of an earlier start
        if status != Status.SUCCESS:  # the stream stops; the guest may start it again
            del self._streams[endpoint]
            self.local_events.extend(self._unlink_stream(endpoint))
            return self._conn.send(InterruptReceivingStatus(status, endpoint))
        self.local_events.append(self._stream_transfer(endpoint, stream))
        packet = InterruptPacket(endpoint, status, len(data), data, id=next(stream.ids))
        return self._conn.send(packet)


__all__ = ["STREAM_TRANSFERS", "Describe", "HostEvent", "HostLink", "status_of"]
