"""The URB phase of one imported device: CMD_SUBMIT and CMD_UNLINK in, replies out.

One reader task takes commands; one worker per endpoint carries out that endpoint's URBs in
order (an endpoint's queue is first in, first out, and libusb's synchronous calls must not
race on one endpoint), so URBs on different endpoints are in flight at once and any number
wait in each queue. Replies are decided synchronously and go to one writer task in that
order, so a RET_UNLINK never overtakes the RET_SUBMIT it follows.

Unlinking (the spec's rules, and stub_rx.c's for a URB that completes meanwhile):

- a URB still queued: RET_UNLINK -ECONNRESET at once, and no RET_SUBMIT.
- a bulk or interrupt URB in progress: its worker stops it when the current bounded call
  returns (``ServeOptions.slice_timeout`` at most). If nothing moved: RET_UNLINK
  -ECONNRESET alone. If data moved before it stopped, or it completed meanwhile:
  RET_SUBMIT (-ECONNRESET with the partial data, or its own completion) then RET_UNLINK 0,
  so data taken from the device always reach the client.
- a control URB in progress cannot be stopped (its request is already on the bus):
  RET_UNLINK -ECONNRESET at once; its result is dropped when it comes.
- a URB already answered, or a seqnum never seen: RET_UNLINK 0.

The URB phase ends when the client closes the connection or breaks a rule (the connection is
dropped at once, transfers in progress are abandoned at their next bounded step), when it
stops reading, or when the device is unplugged: then the URBs still queued are carried out
(each ends -ENODEV at once), their replies are sent, and the connection is closed. What the
client makes the server hold (URBs, unlinks waiting, replies not yet written) is counted in
memory terms against ``ServeOptions.max_pending_bytes`` (``_budget``).
"""

from __future__ import annotations

import contextlib
import errno
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from usbip_gadget._errors import RemoteProtocolError
from usbip_gadget.protocol import (
    NEED_DATA,
    NO_ISO,
    CmdSubmit,
    CmdUnlink,
    Direction,
    IsoPacket,
    Message,
    Phase,
    RetSubmit,
    RetUnlink,
    Sentinel,
)
from usbip_gadget.server._budget import UNLINK_COST, Ledger, reply_cost, urb_cost
from usbip_gadget.server._options import ServeOptions
from usbip_gadget.server._source import EndpointInfo, LocalDevice, Moved
from usbip_gadget.server._transfer import ECONNRESET, Threads, perform
from usbip_gadget.usb import TransferType

ENODEV = -errno.ENODEV
_RECEIVE_SIZE = 256 * 1024
#: Endpoint 0 and up to 30 data endpoints each have one worker.
_WORKER_THREADS = 31
#: After an unplug, how long the remaining URBs and their replies may take.
_DRAIN_GRACE = 1.0

_NETWORK_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class Link(Protocol):
    """What the URB phase reads commands from and answers through: USB/IP's
    ``protocol.Connection``, or a link that carries the same over another protocol
    (``usbredir.HostLink``), whose events may also be ``bytes`` to write as they are and
    which may leave commands of its own in ``local_events``."""

    @property
    def phase(self) -> Phase: ...

    def receive_data(self, data: bytes | bytearray) -> None: ...

    def next_event(self) -> Message | Sentinel | bytes: ...

    def send(self, message: Message) -> bytes: ...


@dataclass(eq=False, slots=True)
class _Urb:
    """A URB received and not yet answered."""

    cmd: CmdSubmit
    endpoint: EndpointInfo | None  # None: the control endpoint
    cost: int  # what it holds until its worker is done with it (``_budget``)
    running: bool = False
    settled: bool = False
    unlinks: list[int] = field(default_factory=list)  # CMD_UNLINK seqnums waiting for it

    def unlink_requested(self) -> bool:
        return bool(self.unlinks)


class UrbPhase:
    """Serves the URBs of ``device`` on ``stream`` until one side goes (see the module doc)."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: Link,
        device: LocalDevice,
        *,
        options: ServeOptions,
        log: Callable[[str], None],
    ) -> None:
        self._stream, self._conn, self._device = stream, conn, device
        self._local: deque[CmdSubmit | CmdUnlink] | None = getattr(conn, "local_events", None)
        self._options = options
        self._log = log
        self._threads = Threads(_WORKER_THREADS)
        self._urbs: dict[int, _Urb] = {}
        self._queues: dict[int, trio.MemorySendChannel[_Urb]] = {}
        self._outbox, self._outgoing = trio.open_memory_channel[bytes](math.inf)
        self._ledger = Ledger(options.max_pending_bytes)
        self._last_activity = trio.current_time()
        self._reason: str | None = None
        self._unplugged = False
        self._iso_noted = False
        self._reader = trio.CancelScope()
        self._watcher = trio.CancelScope()
        self._workers: trio.Nursery | None = None

    async def run(self) -> str:
        """Serve until the URB phase ends; why it ended, in a few words."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_loop)
            nursery.start_soon(self._watch_presence)
            if self._options.idle_timeout is not None:
                nursery.start_soon(self._watch_idle, self._options.idle_timeout)
            async with trio.open_nursery() as workers:
                self._workers = workers
                await self._read_loop()
                if self._unplugged:
                    self._drain(workers.cancel_scope)
                else:  # the client left or broke the rules: abandon everything
                    nursery.cancel_scope.cancel()
            self._watcher.cancel()
            self._outbox.close()  # the writer sends what is left, then ends
            nursery.cancel_scope.deadline = trio.current_time() + self._options.send_timeout
        return self._reason or "ended"

    async def _watch_presence(self) -> None:
        """End the session when the device is pulled out, even if nothing is in flight."""
        with self._watcher:
            while self._device.plugged():  # noqa: ASYNC110 - sysfs gives no change event
                await trio.sleep(self._options.presence_interval)
            if not self._unplugged:
                self._unplugged = True
                self._end("device unplugged")

    async def _watch_idle(self, limit: float) -> None:
        """End the session once the client has had no URB in flight and sent nothing for
        ``limit`` seconds (a waiting URB, such as a keyboard's, is not idleness)."""
        while True:
            due = self._last_activity + limit
            if not self._urbs and trio.current_time() >= due:
                self._end(f"idle for {limit:g} s")
                return
            # A URB in flight settles later and moves ``_last_activity`` on.
            await trio.sleep_until(due if not self._urbs else trio.current_time() + limit)

    def _drain(self, workers: trio.CancelScope) -> None:
        """After an unplug, let the workers answer what is queued (each ends -ENODEV)."""
        for queue in self._queues.values():
            queue.close()
        grace = self._options.control_timeout + self._options.slice_timeout + _DRAIN_GRACE
        workers.deadline = trio.current_time() + grace

    def _end(self, reason: str) -> None:
        if self._reason is None:
            self._reason = reason
        self._reader.cancel()

    # ------------------------------------------------------------ reading

    async def _read_loop(self) -> None:
        with self._reader:
            try:
                await self._read_commands()
            except RemoteProtocolError as exc:
                self._end(f"dropped: {exc}")
            except _NETWORK_ERRORS:
                self._end("connection lost")

    async def _read_commands(self) -> None:
        while True:
            event = self._conn.next_event()
            if event is NEED_DATA:
                self._conn.receive_data(await self._stream.receive_some(_RECEIVE_SIZE))
                self._last_activity = trio.current_time()
            elif isinstance(event, Sentinel):
                self._end("closed by the client")
                return
            elif isinstance(event, CmdSubmit):
                self._submit(event)
            elif isinstance(event, CmdUnlink):
                self._unlink(event)
            elif isinstance(event, bytes):  # a link's own answer: counted like a command
                if self._conn.phase is Phase.URB and event:
                    self._ledger.admit(reply_cost(event))
                    self._queue_bytes(event)
            else:
                raise RemoteProtocolError(f"unexpected {type(event).__name__} in the URB phase")

    def _submit(self, cmd: CmdSubmit) -> None:
        cost = urb_cost(cmd)
        self._admit(cost)
        endpoint = self._route(cmd)
        if endpoint is not None and (
            cmd.is_iso or endpoint.transfer_type == TransferType.ISOCHRONOUS
        ):
            self._refuse_iso(cmd)
            self._ledger.give(cost)
            return
        urb = self._urbs[cmd.seqnum] = _Urb(cmd, endpoint, cost)
        self._queue_for(0 if endpoint is None else endpoint.address).send_nowait(urb)

    def _admit(self, cost: int, *, urbs: int = 1) -> None:
        """Refuse a command that would put more URBs in flight or hold more memory than
        allowed (``ServeOptions.max_pending_bytes``, counted by its ``Ledger``)."""
        limit = self._options.max_in_flight
        if len(self._urbs) + urbs > limit:
            raise RemoteProtocolError(f"more than {limit} URBs in flight")
        self._ledger.admit(cost)

    def _route(self, cmd: CmdSubmit) -> EndpointInfo | None:
        """The endpoint a CMD_SUBMIT names; one the device does not have drops the client."""
        if cmd.ep == 0:
            return None
        address = cmd.ep | (0x80 if cmd.direction == Direction.IN else 0)
        endpoint = self._device.endpoints().get(address)
        if endpoint is None:
            raise RemoteProtocolError(
                f"CMD_SUBMIT to endpoint 0x{address:02x}, which the device does not have "
                "in its current configuration"
            )
        return endpoint

    def _refuse_iso(self, cmd: CmdSubmit) -> None:
        if not self._iso_noted:
            self._iso_noted = True
            self._log(f"{self._device.busid}: isochronous URBs are answered -EOPNOTSUPP")
        status = -errno.EOPNOTSUPP
        packets = tuple(IsoPacket(p.offset, p.length, 0, status) for p in cmd.iso_packets)
        count = cmd.number_of_packets if packets else NO_ISO
        self._post(RetSubmit(cmd.seqnum, status, 0, b"", 0, count, len(packets), packets))

    def _unlink(self, cmd: CmdUnlink) -> None:
        # Counted while it waits for its URB's worker, or until its answer is queued (which
        # then counts for itself): a client that unlinks without reading answers is dropped.
        self._admit(UNLINK_COST, urbs=0)
        urb = self._urbs.get(cmd.unlink_seqnum)
        if urb is not None and urb.running and urb.endpoint is not None:
            urb.unlinks.append(cmd.seqnum)  # its worker answers when the current step ends
            return
        if urb is None:
            self._post(RetUnlink(cmd.seqnum, 0))
        else:  # still queued: its worker skips it (and gives back what it holds)
            self._settle(urb)
            self._post(RetUnlink(cmd.seqnum, ECONNRESET))
        self._ledger.give(UNLINK_COST)

    # ------------------------------------------------------------ endpoint workers

    def _queue_for(self, address: int) -> trio.MemorySendChannel[_Urb]:
        queue = self._queues.get(address)
        if queue is None:
            queue, receive = trio.open_memory_channel[_Urb](math.inf)
            self._queues[address] = queue
            assert self._workers is not None
            self._workers.start_soon(self._work, receive)
        return queue

    async def _work(self, receive: trio.MemoryReceiveChannel[_Urb]) -> None:
        with receive:
            async for urb in receive:
                if not urb.settled:  # else it was unlinked while it waited
                    urb.running = True
                    moved = await perform(
                        self._device, urb.cmd, urb.endpoint, threads=self._threads,
                        options=self._options, stop=urb.unlink_requested,
                    )  # fmt: skip
                    self._complete(urb, moved)
                self._ledger.give(urb.cost)

    def _complete(self, urb: _Urb, moved: Moved) -> None:
        if moved.status == ENODEV and not self._unplugged:
            self._unplugged = True
            self._end("device unplugged")
        if urb.settled:
            return  # a control URB unlinked while it ran: already answered
        self._settle(urb)
        stopped_empty = moved.status == ECONNRESET and moved.length == 0
        if not stopped_empty:
            self._post(_ret_submit(urb.cmd, moved))
        for unlink in urb.unlinks:
            self._post(RetUnlink(unlink, ECONNRESET if stopped_empty else 0))
            self._ledger.give(UNLINK_COST)

    def _settle(self, urb: _Urb) -> None:
        urb.settled = True
        self._last_activity = trio.current_time()
        del self._urbs[urb.cmd.seqnum]

    # ------------------------------------------------------------ writing

    def _post(self, message: Message) -> None:
        if self._conn.phase is not Phase.URB:
            return  # the client closed the connection: nobody to answer
        self._post_bytes(self._conn.send(message))
        if self._local:
            self._submit_local()

    def _post_bytes(self, data: bytes) -> None:
        if data:
            self._ledger.take(reply_cost(data))
            self._queue_bytes(data)

    def _queue_bytes(self, data: bytes) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            self._outbox.send_nowait(data)

    def _submit_local(self) -> None:
        """Commands the link made itself as it answered (a stream's next transfer, the
        unlink of a stream's transfers); none once the session is ending."""
        local = self._local
        assert local is not None
        try:
            while local and self._reason is None:
                command = local.popleft()
                if isinstance(command, CmdSubmit):
                    self._submit(command)
                else:
                    self._unlink(command)
        except RemoteProtocolError as exc:
            self._end(f"dropped: {exc}")
        local.clear()

    async def _write_loop(self) -> None:
        timeout = self._options.send_timeout
        with self._outgoing:
            async for data in self._outgoing:
                try:
                    with trio.fail_after(timeout):
                        await self._stream.send_all(data)
                except trio.TooSlowError:
                    self._end(f"the client took no data for {timeout:g} s")
                    return
                except _NETWORK_ERRORS:
                    self._end("connection lost")
                    return
                self._ledger.give(reply_cost(data))


def _ret_submit(cmd: CmdSubmit, moved: Moved) -> RetSubmit:
    """RET_SUBMIT for ``cmd``: IN data (even with an error status, as Linux sends it)."""
    if cmd.direction == Direction.OUT:
        return RetSubmit(cmd.seqnum, moved.status, min(moved.length, cmd.transfer_buffer_length))
    data = moved.data[: cmd.transfer_buffer_length]
    status = moved.status if len(moved.data) <= cmd.transfer_buffer_length else -errno.EOVERFLOW
    return RetSubmit(cmd.seqnum, status, len(data), data)
