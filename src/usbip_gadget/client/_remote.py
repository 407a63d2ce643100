"""The userspace host controller: an imported device and the URBs submitted to it."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from usbip_gadget._errors import (
    ImportRefused,
    RemoteProtocolError,
    TransportError,
    UsbipGadgetError,
    UsbipTimeout,
    transfer_error,
)
from usbip_gadget._groups import collapse_single
from usbip_gadget._net import map_transport_errors
from usbip_gadget.protocol import (
    NEED_DATA,
    NO_ISO,
    CmdSubmit,
    CmdUnlink,
    Connection,
    DevlistReply,
    DevlistRequest,
    Direction,
    ExportedDevice,
    ExportReply,
    ExportRequest,
    ImportReply,
    ImportRequest,
    IsoPacket,
    Message,
    OpStatus,
    RetSubmit,
    RetUnlink,
    Role,
    Sentinel,
    TransferFlags,
    UnexportReply,
    UnexportRequest,
    UsbDevice,
)
from usbip_gadget.usb import SetupPacket

_RECEIVE_SIZE = 256 * 1024
_LOW_WATER_MIN = 4096  # below this, a wakeup costs less than the system call
_LOW_WATER_CAP = 128 * 1024
_OUTBOX_LIMIT = 4 << 20  # bytes queued for the writer before posting waits for it


@dataclass(frozen=True, slots=True)
class UrbResult:
    """A completed URB: its status (0 or a negated errno) and what came back."""

    status: int
    actual_length: int
    data: bytes
    start_frame: int = 0
    error_count: int = 0
    iso_packets: tuple[IsoPacket, ...] = ()


class _DeadlineExpired(UsbipTimeout):
    """``Urb.wait``'s deadline passed (not the connection's failure)."""


class _Pending:
    """One URB waiting for its RET_SUBMIT (or for its unlink to succeed)."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: RetSubmit | None = None
        self.error: UsbipGadgetError | None = None


async def _receive(stream: trio.abc.ReceiveStream, conn: Connection, what: str) -> None:
    with map_transport_errors(what):
        data = await stream.receive_some(_RECEIVE_SIZE)
    conn.receive_data(data)


def _socket_fileno(stream: trio.abc.Stream) -> int | None:
    """The file descriptor of a TCP stream's socket (non-blocking under trio); None else."""
    sock = getattr(stream, "socket", None)
    return sock.fileno() if isinstance(sock, trio.socket.SocketType) else None


class _LowWater:
    """SO_RCVLOWAT on a TCP stream: wake the reader once a reply's data are all in.

    A large IN reply arrives in many segments; without this, each wakes the reader for a
    parse that cannot finish yet. Linux's tcp_poll reports readable only from the low-water
    mark on (or at end of stream). Streams without a socket (tests) are left alone.
    """

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        sock = getattr(stream, "socket", None)
        self._socket = sock if isinstance(sock, trio.socket.SocketType) else None
        self._value = 1

    def want(self, count: int) -> None:
        value = min(count, _LOW_WATER_CAP) if count >= _LOW_WATER_MIN else 1
        if self._socket is None or value == self._value:
            return
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, value)
        except OSError:
            self._socket = None  # not supported here; receive as data come
            return
        self._value = value


async def _op_exchange(
    stream: trio.abc.Stream, conn: Connection, request: Message, timeout: float
) -> Message:
    """Send an op request and wait for the reply."""
    with trio.move_on_after(timeout):
        with map_transport_errors("cannot send request"):
            await stream.send_all(conn.send(request))
        while (event := conn.next_event()) is NEED_DATA:
            await _receive(stream, conn, "no reply")
        if isinstance(event, Sentinel):
            raise TransportError("the server closed the connection without replying")
        return event
    raise UsbipTimeout(f"no reply to {type(request).__name__} within {timeout:g} s")


async def list_devices(stream: trio.abc.Stream, *, timeout: float = 10.0) -> list[ExportedDevice]:
    """OP_REQ_DEVLIST: the devices a server exports."""
    reply = await _op_exchange(stream, Connection(Role.HOST), DevlistRequest(), timeout)
    assert isinstance(reply, DevlistReply)
    if reply.status != OpStatus.OK:
        raise UsbipGadgetError(
            f"the server refused to list devices: {OpStatus.describe(reply.status)}"
        )
    return list(reply.devices)


@asynccontextmanager
async def open_remote_device(
    stream: trio.abc.Stream, busid: str, *, timeout: float = 10.0, unlink_timeout: float = 1.0
) -> AsyncIterator[RemoteDevice]:
    """OP_REQ_IMPORT ``busid`` over ``stream`` and serve its URB traffic until the block ends."""
    conn = Connection(Role.HOST)
    reply = await _op_exchange(stream, conn, ImportRequest(busid), timeout)
    assert isinstance(reply, ImportReply)
    if reply.status != OpStatus.OK or reply.device is None:
        reason = OpStatus.describe(reply.status)
        raise ImportRefused(f"cannot import {busid}: {reason}", reason=reason, status=reply.status)
    with collapse_single():
        async with trio.open_nursery() as nursery:
            device = RemoteDevice(
                stream, conn, reply.device, unlink_timeout=unlink_timeout, send_timeout=timeout
            )
            await nursery.start(device.run_reader)
            try:
                yield device
            finally:
                nursery.cancel_scope.cancel()


@dataclass(frozen=True)
class ExportOffer:
    """An OP_REQ_EXPORT received and not yet answered (``accept_offer`` or ``refuse_offer``)."""

    conn: Connection
    device: UsbDevice


async def receive_offer(stream: trio.abc.Stream, *, timeout: float = 10.0) -> ExportOffer:
    """The "connect" direction: the OP_REQ_EXPORT a device side sends first on ``stream``."""
    conn = Connection(Role.HOST)
    request = await _first_op(stream, conn, timeout, "no device offered")
    if not isinstance(request, ExportRequest):
        raise RemoteProtocolError(f"expected OP_REQ_EXPORT, got {type(request).__name__}")
    return ExportOffer(conn, request.device)


@asynccontextmanager
async def accept_offer(
    stream: trio.abc.Stream, offer: ExportOffer, *, unlink_timeout: float = 1.0
) -> AsyncIterator[RemoteDevice]:
    """Accept ``offer`` with OP_REP_EXPORT and serve its URB traffic until the block ends.

    The device side may withdraw it later with OP_REQ_UNEXPORT, which the reader answers and
    reports as a ``TransportError``, like a closed connection.
    """
    with map_transport_errors("cannot answer the export"):
        await stream.send_all(offer.conn.send(ExportReply()))
    with collapse_single():
        async with trio.open_nursery() as nursery:
            device = RemoteDevice(stream, offer.conn, offer.device, unlink_timeout=unlink_timeout)
            await nursery.start(device.run_reader)
            try:
                yield device
            finally:
                nursery.cancel_scope.cancel()


async def refuse_offer(stream: trio.abc.Stream, offer: ExportOffer, status: OpStatus) -> None:
    """Answer ``offer`` with a failure ``status``."""
    with map_transport_errors("cannot answer the export"):
        await stream.send_all(offer.conn.send(ExportReply(status)))


@asynccontextmanager
async def accept_exported_device(
    stream: trio.abc.Stream, *, timeout: float = 10.0, unlink_timeout: float = 1.0
) -> AsyncIterator[RemoteDevice]:
    """``receive_offer`` then ``accept_offer``."""
    offer = await receive_offer(stream, timeout=timeout)
    async with accept_offer(stream, offer, unlink_timeout=unlink_timeout) as device:
        yield device


async def refuse_export(stream: trio.abc.Stream, status: OpStatus, *, timeout: float) -> None:
    """``receive_offer`` then ``refuse_offer``."""
    await refuse_offer(stream, await receive_offer(stream, timeout=timeout), status)


async def _first_op(
    stream: trio.abc.Stream, conn: Connection, timeout: float, what: str
) -> Message:
    with trio.move_on_after(timeout):
        while (event := conn.next_event()) is NEED_DATA:
            await _receive(stream, conn, what)
        if isinstance(event, Sentinel):
            raise TransportError(f"{what}: the peer closed the connection")
        return event
    raise UsbipTimeout(f"{what} within {timeout:g} s")


class RemoteDevice:
    """An imported device: submit URBs to it, many at once, from any task.

    One reader task matches RET_SUBMIT/RET_UNLINK to the waiting submitters by seqnum.
    Messages go into an outbox that one writer task sends, everything queued in one send:
    posting a URB does no I/O, so it cannot be cut in half, and URBs posted together leave
    together. A server that takes nothing for ``send_timeout`` seconds while messages wait
    ends the connection. A transfer that times out or is cancelled is unlinked on the server
    before ``submit`` returns.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: Connection,
        device: UsbDevice,
        *,
        unlink_timeout: float = 1.0,
        send_timeout: float = 10.0,
    ) -> None:
        self.device = device
        self.unlink_timeout = unlink_timeout
        self.send_timeout = send_timeout
        self.closed = trio.Event()
        self._stream = stream
        self._conn = conn
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._outbox_filled = trio.Event()
        self._outbox_drained = trio.Event()
        self._writing = False
        self._idle = trio.Event()
        self._fileno = _socket_fileno(stream)
        self._seqnums = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._unlinks: dict[int, int] = {}  # CMD_UNLINK seqnum -> the seqnum it unlinks
        self._failure: UsbipGadgetError | None = None

    @property
    def failure(self) -> UsbipGadgetError | None:
        """Why the connection ended, once it has."""
        return self._failure

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------ reader

    async def run_reader(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Read replies (and send the outbox) until the connection ends; never raises."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_writer)
            task_status.started()
            await self._read()
            nursery.cancel_scope.cancel()

    async def _run_writer(self) -> None:
        try:
            while self._failure is None:
                if not self._outbox:
                    self._outbox_filled = trio.Event()
                    await self._outbox_filled.wait()
                    continue
                data = self._take_outbox()
                with trio.move_on_after(self.send_timeout):
                    self._writing = True
                    with map_transport_errors("connection to the server"):
                        await self._stream.send_all(data)
                    self._writing = False
                    if not self._outbox:
                        self._idle.set()
                    continue
                raise UsbipTimeout(f"the server took no data for {self.send_timeout:g} s")
        except UsbipGadgetError as exc:
            self._fail(exc)

    async def _read(self) -> None:
        low_water = _LowWater(self._stream)
        try:
            while True:
                event = self._conn.next_event()
                if event is NEED_DATA:
                    low_water.want(self._conn.bytes_wanted())
                    await _receive(self._stream, self._conn, "connection to the server")
                elif type(event) is RetSubmit:  # the common case, without a coroutine
                    self._complete(event.seqnum, result=event)
                elif isinstance(event, Sentinel):
                    raise TransportError("the server closed the connection")
                else:
                    await self._dispatch(event)
        except UsbipGadgetError as exc:
            self._fail(exc)

    async def _dispatch(self, message: Message) -> None:
        match message:
            case RetSubmit(seqnum=seq):
                self._complete(seq, result=message)
            case RetUnlink(seqnum=seq, status=status):
                target = self._unlinks.pop(seq, None)
                if target is None:
                    return
                if status != 0:
                    self._complete(target, error=transfer_error(status))
                else:  # completed as the unlink arrived; the server sends no RET_SUBMIT then
                    self._complete(target, result=RetSubmit(target))
            case UnexportRequest():
                self._send(UnexportReply())
                with trio.move_on_after(self.unlink_timeout):
                    await self._flushed()
                raise TransportError("the exporter withdrew the device")

    def _complete(
        self, seq: int, *, result: RetSubmit | None = None, error: UsbipGadgetError | None = None
    ) -> None:
        pending = self._pending.get(seq)
        if pending is not None and not pending.done.is_set():
            pending.result, pending.error = result, error
            pending.done.set()

    def _fail(self, exc: UsbipGadgetError) -> None:
        if self._failure is None:
            self._failure = exc
        for pending in self._pending.values():
            if not pending.done.is_set():
                pending.error = exc
                pending.done.set()
        self._idle.set()
        self._outbox_drained.set()
        self.closed.set()

    # ------------------------------------------------------------ sending

    def _send(self, message: Message) -> None:
        """Queue ``message`` for the writer; raises the failure of an ended connection."""
        if self._failure is not None:
            raise self._failure.with_traceback(None)
        data = self._conn.send(message)
        self._outbox.append(data)
        self._outbox_bytes += len(data)
        self._outbox_filled.set()

    def _flush_now(self) -> None:
        """Write the outbox to the socket at once, if the writer is idle and the socket
        takes it without waiting; what it does not take is left to the writer."""
        if self._writing or not self._outbox or self._fileno is None:
            return
        data = self._take_outbox()
        try:
            written = os.write(self._fileno, data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self._fail(TransportError(f"connection to the server: {os.strerror(exc.errno or 0)}"))
            return
        if written < len(data):  # the writer, woken by the queueing, sends the rest
            self._outbox = [data[written:]]
            self._outbox_bytes = len(data) - written
        else:
            self._idle.set()

    def _take_outbox(self) -> bytes:
        """Everything queued, as one string of bytes; the outbox is left empty."""
        outbox = self._outbox
        data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
        self._outbox = []
        self._outbox_bytes = 0
        self._outbox_drained.set()
        return data

    async def _flushed(self) -> None:
        """Wait until everything queued has been sent (or the connection has failed)."""
        while (self._outbox or self._writing) and self._failure is None:
            self._idle = trio.Event()
            await self._idle.wait()

    async def _outbox_room(self) -> None:
        """Wait while the writer is behind by more than ``_OUTBOX_LIMIT`` bytes."""
        while self._outbox_bytes > _OUTBOX_LIMIT and self._failure is None:
            self._outbox_drained = trio.Event()
            await self._outbox_drained.wait()

    def _next_seqnum(self) -> int:
        while True:
            seq = next(self._seqnums) & 0xFFFFFFFF
            if seq and seq not in self._pending and seq not in self._unlinks:
                return seq

    # ------------------------------------------------------------ URBs

    async def submit(
        self,
        ep: int,
        direction: Direction,
        length: int = 0,
        data: bytes = b"",
        *,
        setup: bytes = bytes(8),
        flags: int = 0,
        interval: int = 0,
        iso_packets: Sequence[IsoPacket] = (),
        timeout: float | None = None,
        check: bool = True,
    ) -> UrbResult:
        """Submit one URB and wait for it; ``timeout`` (seconds) unlinks it when it expires.

        With ``check`` a non-zero status raises the matching ``TransferError``.
        """
        deadline = math.inf if timeout is None else trio.current_time() + timeout
        urb: Urb | None = None
        # The deadline covers the send too: a server that stops reading must not hang us.
        with trio.move_on_at(deadline):
            urb = await self.post(
                ep, direction, length, data, setup=setup, flags=flags, interval=interval,
                iso_packets=iso_packets, flush=True,
            )  # fmt: skip
        if urb is None:
            raise UsbipTimeout(
                f"transfer on endpoint {ep}: the server took no data for {timeout:g} s"
            )
        try:
            return await urb.wait(deadline=deadline, check=check)
        except _DeadlineExpired:
            raise UsbipTimeout(f"transfer on endpoint {ep} timed out after {timeout:g} s") from None

    async def post(
        self,
        ep: int,
        direction: Direction,
        length: int = 0,
        data: bytes = b"",
        *,
        setup: bytes = bytes(8),
        flags: int = 0,
        interval: int = 0,
        iso_packets: Sequence[IsoPacket] = (),
        flush: bool = False,
    ) -> Urb:
        """Queue one CMD_SUBMIT and return at once: ``Urb.wait`` gives its completion.

        URBs posted one after another from one task reach the server in that order. Every
        posted URB must be waited for or unlinked (``unlink_all``). It waits only while the
        writer is far behind, and if cancelled then, nothing was queued. With ``flush`` what
        is queued goes out now if the socket takes it (one URB that nothing else will join),
        instead of when the writer task next runs.
        """
        await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller queues nothing
        if self._outbox_bytes > _OUTBOX_LIMIT:
            await self._outbox_room()
        if self._failure is not None:
            raise self._failure.with_traceback(None)
        if direction == Direction.IN:
            flags |= TransferFlags.DIR_IN
        cmd = CmdSubmit(
            self._next_seqnum(), self.device.devid, direction, ep,
            length if direction == Direction.IN else len(data), flags, setup, data,
            number_of_packets=len(iso_packets) if iso_packets else NO_ISO,
            interval=interval, iso_packets=tuple(iso_packets),
        )  # fmt: skip
        self._send(cmd)
        pending = self._pending[cmd.seqnum] = _Pending()
        if flush:
            self._flush_now()
        return Urb(self, cmd, pending)

    async def unlink_all(self, urbs: Sequence[Urb]) -> None:
        """Unlink every URB of ``urbs`` not yet settled, all at once, bounded by unlink_timeout.

        Whatever completed meanwhile is dropped: callers unlink what they no longer want.
        """
        with trio.CancelScope(shield=True), trio.move_on_after(self.unlink_timeout):
            waiting = [urb for urb in urbs if not urb.settled]
            for urb in waiting:
                await self._send_unlink(urb)
            for urb in waiting:
                await urb._pending.done.wait()
        for urb in urbs:
            self._forget(urb.cmd.seqnum)

    def _forget(self, seqnum: int) -> None:
        self._pending.pop(seqnum, None)
        if self._unlinks:  # rarely any: answered unlinks are dropped as they arrive
            for unlink, target in list(self._unlinks.items()):
                if target == seqnum:
                    del self._unlinks[unlink]

    async def _send_unlink(self, urb: Urb) -> None:
        unlink_seqnum = self._next_seqnum()
        self._unlinks[unlink_seqnum] = urb.cmd.seqnum
        # If the connection is gone, the URB is gone with it (and was failed).
        with contextlib.suppress(UsbipGadgetError):
            self._send(CmdUnlink(unlink_seqnum, self.device.devid, urb.cmd.seqnum))
        await trio.lowlevel.checkpoint()

    async def _unlink(self, urb: Urb) -> None:
        """CMD_UNLINK ``urb`` and wait (bounded) for the server to settle it either way."""
        with trio.move_on_after(self.unlink_timeout):
            await self._send_unlink(urb)
            await urb._pending.done.wait()
        self._forget(urb.cmd.seqnum)

    async def control(
        self, setup: SetupPacket, data: bytes = b"", *, timeout: float | None = 5.0
    ) -> bytes:
        """A control transfer on endpoint 0: IN returns what the device sent."""
        direction = Direction.IN if setup.is_in else Direction.OUT
        if direction == Direction.OUT and len(data) != setup.w_length:
            raise UsbipGadgetError("control OUT data length must equal wLength")
        result = await self.submit(
            0, direction, setup.w_length, data, setup=setup.pack(), timeout=timeout
        )
        return result.data

    async def transfer_in(self, ep: int, length: int, *, timeout: float | None = None) -> bytes:
        """A bulk or interrupt IN transfer (the wire does not tell them apart)."""
        return (await self.submit(ep, Direction.IN, length, timeout=timeout)).data

    async def transfer_out(
        self, ep: int, data: bytes, *, zero_packet: bool = False, timeout: float | None = None
    ) -> int:
        """A bulk or interrupt OUT transfer; returns the bytes the device accepted."""
        flags = TransferFlags.ZERO_PACKET if zero_packet else 0
        return (
            await self.submit(ep, Direction.OUT, data=data, flags=flags, timeout=timeout)
        ).actual_length

    async def iso_in(
        self,
        ep: int,
        packet_sizes: Sequence[int],
        *,
        interval: int = 1,
        timeout: float | None = None,
    ) -> UrbResult:
        """An isochronous IN URB of ``len(packet_sizes)`` packets (ASAP scheduling)."""
        packets = _layout(packet_sizes)
        return await self.submit(
            ep, Direction.IN, sum(packet_sizes), flags=TransferFlags.ISO_ASAP,
            interval=interval, iso_packets=packets, timeout=timeout, check=False,
        )  # fmt: skip

    async def iso_out(
        self, ep: int, packets: Sequence[bytes], *, interval: int = 1, timeout: float | None = None
    ) -> UrbResult:
        """An isochronous OUT URB carrying one packet per element of ``packets``."""
        layout = _layout([len(p) for p in packets])
        return await self.submit(
            ep, Direction.OUT, data=b"".join(packets), flags=TransferFlags.ISO_ASAP,
            interval=interval, iso_packets=layout, timeout=timeout, check=False,
        )  # fmt: skip

    async def aclose(self) -> None:
        """Close the connection (the server releases the device)."""
        self._fail(TransportError("connection closed"))
        with map_transport_errors("closing"):
            await self._stream.aclose()


class Urb:
    """A URB sent to the server: wait for its completion, or unlink it."""

    __slots__ = ("_device", "_pending", "cmd")

    def __init__(self, device: RemoteDevice, cmd: CmdSubmit, pending: _Pending) -> None:
        self._device = device
        self._pending = pending
        self.cmd = cmd

    @property
    def settled(self) -> bool:
        """Whether a reply (or the end of the connection) has settled it."""
        return self._pending.done.is_set()

    @property
    def succeeded(self) -> bool:
        """Whether it is settled by a RET_SUBMIT of status 0 (``wait`` then returns at once)."""
        pending = self._pending
        return (
            pending.done.is_set()
            and pending.error is None
            and pending.result is not None
            and pending.result.status == 0
        )

    async def settle(self) -> None:
        """Wait until a reply settles it; being cancelled here unlinks nothing."""
        await self._pending.done.wait()

    def settled_with(self) -> tuple[int, bytes] | None:
        """The status and data of the RET_SUBMIT that settled it, if one did."""
        result = self._pending.result
        if result is None or self._pending.error is not None:
            return None
        return result.status, result.data

    def result(self) -> UrbResult:
        """The completion of a settled URB (see ``settled``), at once; forgets the URB."""
        pending = self._pending
        if not pending.done.is_set():
            raise RuntimeError("the URB is not settled yet")
        self._device._forget(self.cmd.seqnum)
        if pending.error is not None:
            raise pending.error.with_traceback(None)
        ret = pending.result
        assert ret is not None
        return UrbResult(
            ret.status, ret.actual_length, ret.data, ret.start_frame, ret.error_count,
            ret.iso_packets,
        )  # fmt: skip

    async def wait(self, *, deadline: float = math.inf, check: bool = False) -> UrbResult:
        """The URB's completion; at ``deadline`` (trio time) it is unlinked → ``UsbipTimeout``.

        If the wait is cancelled the URB is unlinked first (shielded, bounded). With ``check``
        a non-zero status raises the matching ``TransferError``.
        """
        pending, cmd = self._pending, self.cmd
        unlinked = False
        try:
            if deadline == math.inf:
                await pending.done.wait()
            else:
                with trio.move_on_at(deadline):
                    await pending.done.wait()
            if not pending.done.is_set():
                unlinked = True
                await self._device._unlink(self)
                if pending.result is None:
                    raise _DeadlineExpired(f"transfer on endpoint {cmd.ep} timed out")
        finally:
            if not unlinked and not pending.done.is_set():
                with trio.CancelScope(shield=True):
                    await self._device._unlink(self)
            self._device._forget(cmd.seqnum)
        if pending.error is not None:
            raise pending.error.with_traceback(None)
        assert pending.result is not None
        ret = pending.result
        if check and ret.status != 0:
            raise transfer_error(ret.status)
        return UrbResult(
            ret.status, ret.actual_length, ret.data, ret.start_frame, ret.error_count,
            ret.iso_packets,
        )  # fmt: skip


def _layout(sizes: Sequence[int]) -> tuple[IsoPacket, ...]:
    offsets = itertools.accumulate(sizes, initial=0)
    return tuple(IsoPacket(offset, size) for offset, size in zip(offsets, sizes, strict=False))


def unpack_iso_in(result: UrbResult, buffer_length: int) -> bytes:
    """Spread a compacted ISO IN payload back to each packet's offset (zero padding between)."""
    buffer = bytearray(buffer_length)
    pos = 0
    for packet in result.iso_packets:
        chunk = result.data[pos : pos + packet.actual_length]
        buffer[packet.offset : packet.offset + len(chunk)] = chunk
        pos += packet.actual_length
    return bytes(buffer)
