"""The URB phase of a connection: URBs submitted to an imported device, many at once.

One reader task matches RET_SUBMIT/RET_UNLINK to their URBs through a ``UrbTable``; one
writer task sends the outbox. The op phase before it is ``_handshake``'s.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Sequence

import trio

from usbip_gadget._errors import TransportError, UsbipGadgetError, UsbipTimeout
from usbip_gadget._net import map_transport_errors
from usbip_gadget.client._iso import iso_layout
from usbip_gadget.client._stream import Link, LowWater, receive, socket_fileno
from usbip_gadget.client._urb import DeadlineExpired, Urb, UrbResult
from usbip_gadget.client._urb_table import UrbTable
from usbip_gadget.protocol import (
    NEED_DATA,
    NO_ISO,
    CmdSubmit,
    Direction,
    IsoPacket,
    Message,
    RetSubmit,
    RetUnlink,
    Sentinel,
    TransferFlags,
    UnexportReply,
    UnexportRequest,
    UsbDevice,
)
from usbip_gadget.usb import SetupPacket

_OUTBOX_LIMIT = 4 << 20  # bytes queued for the writer before posting waits for it


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
        conn: Link,
        device: UsbDevice,
        *,
        unlink_timeout: float = 1.0,
        send_timeout: float = 10.0,
    ) -> None:
        self.device = device
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
        self._fileno = socket_fileno(stream)
        self._table = UrbTable(self._send, device.devid, unlink_timeout=unlink_timeout)
        self._failure: UsbipGadgetError | None = None
        # Answers a link gives without the wire (``LocalLink``); USB/IP's has none.
        self._local: deque[RetSubmit | RetUnlink] | None = getattr(conn, "local_events", None)

    @property
    def failure(self) -> UsbipGadgetError | None:
        """Why the connection ended, once it has."""
        return self._failure

    @property
    def in_flight(self) -> int:
        return len(self._table)

    @property
    def unlink_timeout(self) -> float:
        """Seconds an unlink may take; then its URB is given up and forgotten."""
        return self._table.unlink_timeout

    @unlink_timeout.setter
    def unlink_timeout(self, value: float) -> None:
        self._table.unlink_timeout = value

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
        low_water = LowWater(self._stream)
        complete = self._table.complete
        # What a link sends unasked once it has read all there was (``LocalLink``).
        take_output = getattr(self._conn, "take_output", None)
        try:
            while True:
                event = self._conn.next_event()
                if event is NEED_DATA:
                    if take_output is not None and (unasked := take_output()):
                        self._queue(unasked)
                    low_water.want(self._conn.bytes_wanted())
                    await receive(self._stream, self._conn, "connection to the server")
                elif type(event) is RetSubmit:  # the common case, without a coroutine
                    complete(event.seqnum, event)
                elif isinstance(event, Sentinel):
                    raise TransportError("the server closed the connection")
                else:
                    await self._dispatch(event)
        except UsbipGadgetError as exc:
            self._fail(exc)

    async def _dispatch(self, message: Message) -> None:
        match message:
            case RetSubmit(seqnum=seq):
                self._table.complete(seq, message)
            case RetUnlink(seqnum=seq, status=status):
                self._table.unlinked(seq, status)
            case UnexportRequest():
                self._send(UnexportReply())
                with trio.move_on_after(self.unlink_timeout):
                    await self._flushed()
                raise TransportError("the exporter withdrew the device")

    def _fail(self, exc: UsbipGadgetError) -> None:
        if self._failure is None:
            self._failure = exc
        self._table.fail(exc)
        self._idle.set()
        self._outbox_drained.set()
        self.closed.set()

    # ------------------------------------------------------------ sending

    def _send(self, message: Message) -> None:
        """Queue ``message`` for the writer; raises the failure of an ended connection."""
        if self._failure is not None:
            raise self._failure.with_traceback(None)
        data = self._conn.send(message)
        if data:
            self._queue(data)
        if self._local and type(message) is not CmdSubmit:
            self._answer_locally()  # a submit's answer waits until its URB is in the table

    def _queue(self, data: bytes) -> None:
        self._outbox.append(data)
        self._outbox_bytes += len(data)
        self._outbox_filled.set()

    def _answer_locally(self) -> None:
        local = self._local
        assert local is not None
        while local:
            event = local.popleft()
            if type(event) is RetSubmit:
                self._table.complete(event.seqnum, event)
            else:
                self._table.unlinked(event.seqnum, event.status)

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
        except DeadlineExpired:
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
        table = self._table
        cmd = CmdSubmit(
            table.next_seqnum(), self.device.devid, direction, ep,
            length if direction == Direction.IN else len(data), flags, setup, data,
            number_of_packets=len(iso_packets) if iso_packets else NO_ISO,
            interval=interval, iso_packets=tuple(iso_packets),
        )  # fmt: skip
        self._send(cmd)
        pending = table.add(cmd.seqnum)
        if self._local:
            self._answer_locally()
        if flush:
            self._flush_now()
        return Urb(table, cmd, pending)

    async def unlink_all(self, urbs: Sequence[Urb]) -> None:
        """Unlink every URB of ``urbs`` not yet settled, all at once, bounded by unlink_timeout.

        Whatever completed meanwhile is dropped: callers unlink what they no longer want.
        """
        table = self._table
        with trio.CancelScope(shield=True), trio.move_on_after(table.unlink_timeout):
            waiting = [urb for urb in urbs if not urb.settled]
            for urb in waiting:
                await table.send_unlink(urb.cmd.seqnum)
            for urb in waiting:
                await urb.settle()
        for urb in urbs:
            table.forget(urb.cmd.seqnum)

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
        packets = iso_layout(packet_sizes)
        return await self.submit(
            ep, Direction.IN, sum(packet_sizes), flags=TransferFlags.ISO_ASAP,
            interval=interval, iso_packets=packets, timeout=timeout, check=False,
        )  # fmt: skip

    async def iso_out(
        self, ep: int, packets: Sequence[bytes], *, interval: int = 1, timeout: float | None = None
    ) -> UrbResult:
        """An isochronous OUT URB carrying one packet per element of ``packets``."""
        layout = iso_layout([len(p) for p in packets])
        return await self.submit(
            ep, Direction.OUT, data=b"".join(packets), flags=TransferFlags.ISO_ASAP,
            interval=interval, iso_packets=layout, timeout=timeout, check=False,
        )  # fmt: skip

    async def aclose(self) -> None:
        """Close the connection (the server releases the device)."""
        self._fail(TransportError("connection closed"))
        with map_transport_errors("closing"):
            await self._stream.aclose()
