"""One pump per data endpoint: gadget endpoint file ↔ URBs on the remote device.

IN: a poster keeps up to ``depth`` URBs queued on the remote (lengths from the plan) and a
deliverer writes their data to the gadget in submission order. A URB that came back short
on a whole packet below its length ended with a zero-length packet, which is written too.

With a plan that guesses lengths (``AdaptivePlan``) a multi-packet IN URB not filled within
the plan's ``watchdog`` is unlinked, what the server gives back of it is delivered, and the
endpoint moves one packet per URB from then on.

OUT: every read from the gadget (one host transfer, or the part of it the plan asked for)
becomes one OUT URB, zero-length ones included, and the next read waits for its result.
With a plan whose OUT is pipelined, the gadget keeps a ring of one-packet reads queued and
the packets are forwarded as they come: each run of full packets, up to and with the short
packet that ends it, is one URB (a zero-length packet its own URB), several URBs in flight.

A remote stall (EPIPE) halts the gadget endpoint and clears the remote one at once (Linux
``usbip-host`` turns CLEAR_FEATURE(ENDPOINT_HALT) into ``usb_clear_halt``), so when the host
clears the halt on the gadget, which the device controller does by itself, both agree.
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable

import trio

from usbip_gadget._errors import DeviceGone
from usbip_gadget._groups import collapse_single
from usbip_gadget.bridge._plans import ADAPTIVE_MAX, Plan
from usbip_gadget.client import RemoteDevice, Urb
from usbip_gadget.gadget import GadgetEndpoint, PacketReader, QueuedWrite
from usbip_gadget.protocol import Direction
from usbip_gadget.usb import SetupPacket, urb_interval

GONE = {-errno.ENODEV, -errno.ESHUTDOWN}
# Per-transfer errors a host controller reports and a driver retries past; any other status
# (EINVAL from the server's usb_submit_urb, ENOMEM...) would fail the same way every time.
TRANSIENT = {-errno.EPROTO, -errno.EILSEQ, -errno.ETIME, -errno.EOVERFLOW, -errno.ECOMM,
             -errno.ENOSR, -errno.EREMOTEIO}  # fmt: skip
MAX_TRANSIENT_IN_A_ROW = 16
CLEAR_HALT_TIMEOUT = 2.0
MAX_GADGET_WRITE = 128 * 1024  # URBs completed together go out in one write up to this
MAX_RING = 128  # one-packet reads a pipelined OUT endpoint keeps queued
QUEUED_WRITES = 2  # gadget writes an IN endpoint keeps queued beyond the one being taken

Log = Callable[[str], None]


async def clear_remote_halt(remote: RemoteDevice, address: int) -> None:
    """CLEAR_FEATURE(ENDPOINT_HALT) on the remote endpoint ``address``."""
    await remote.control(SetupPacket.clear_feature_halt(address), timeout=CLEAR_HALT_TIMEOUT)


async def _acquire(lock: trio.Lock | trio.Semaphore) -> None:
    """``lock.acquire()``, without a checkpoint when it is free at once."""
    try:
        lock.acquire_nowait()
    except trio.WouldBlock:
        await lock.acquire()


class _Queue:
    """URBs in flight on one endpoint, oldest first, bounded by ``depth``."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.urbs: deque[tuple[Urb, int]] = deque()
        self.slots = trio.Semaphore(depth)
        self._added = trio.Event()
        self._freed = trio.Event()

    def append(self, urb: Urb, length: int) -> None:
        self.urbs.append((urb, length))
        self._added.set()

    async def head(self) -> tuple[Urb, int]:
        while not self.urbs:
            self._added = trio.Event()
            await self._added.wait()
        return self.urbs[0]

    def pop(self) -> None:
        self.urbs.popleft()
        self.slots.release()
        self._freed.set()

    async def drained(self) -> None:
        """Wait until every URB in the queue is settled and taken."""
        await self._until_free(self.depth)

    async def refill(self, count: int) -> None:
        """When full, wait until ``count`` slots are free: URBs then go out together, in one
        send, and their completions come back together (one wake-up for several URBs)."""
        if len(self.urbs) >= self.depth:
            await self._until_free(count)

    async def _until_free(self, count: int) -> None:
        while self.depth - len(self.urbs) < count:
            self._freed = trio.Event()
            await self._freed.wait()

    def take_all(self) -> list[tuple[Urb, int]]:
        taken = list(self.urbs)
        for _ in taken:
            self.pop()
        return taken


class _Pump:
    def __init__(
        self, remote: RemoteDevice, endpoint: GadgetEndpoint, plan: Plan, depth: int, log: Log
    ) -> None:
        self.remote = remote
        self.endpoint = endpoint
        self.plan = plan
        self.address = endpoint.descriptor.b_endpoint_address
        self.number = self.address & 0x0F
        self.packet = max(1, endpoint.descriptor.max_packet_size)
        self.interval = urb_interval(endpoint.descriptor, remote.device.speed)
        self.queue = _Queue(depth)
        self.failures = 0
        self.log = log
        self.lock = trio.Lock()  # held while posting, and while recovering from a stall

    async def run(self) -> None:
        try:
            with collapse_single():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.post_loop)
                    await self.result_loop()  # returns if the endpoint has to stop
                    nursery.cancel_scope.cancel()
        finally:
            await self.remote.unlink_all([urb for urb, _ in self.queue.urbs])

    async def post_loop(self) -> None:
        raise NotImplementedError

    async def result_loop(self) -> None:
        watchdog = self.plan.watchdog
        while True:
            urb, length = await self.queue.head()
            if not urb.settled:
                # Cancelled here, the URB is unlinked by ``run`` with the rest of the queue.
                if watchdog is not None and length > self.packet:
                    with trio.move_on_after(watchdog):
                        await urb.settle()
                    if not urb.settled:
                        await self.unstick()
                        continue
                else:
                    await urb.settle()
            result = urb.result()
            self.queue.pop()
            if result.status not in TRANSIENT:
                self.failures = 0
            if result.status == 0:
                await self.completed(result.data, length)
            elif result.status == -errno.EPIPE:
                await self.stalled(result.data)
            elif result.status in GONE:
                raise DeviceGone(
                    result.status, f"endpoint 0x{self.address:02x}: the device is gone"
                )
            elif self.failed(result.status):
                return

    def failed(self, status: int) -> bool:
        """Log a failed transfer; true when the endpoint has to stop."""
        name = errno.errorcode.get(-status, str(status))
        where = f"endpoint 0x{self.address:02x}"
        self.failures += 1
        if status in TRANSIENT and self.failures < MAX_TRANSIENT_IN_A_ROW:
            self.log(f"{where}: transfer failed on the device ({name}); its data are lost")
            return False
        self.log(f"{where}: the device's side refuses its transfers ({name}); endpoint stopped")
        return True

    async def completed(self, data: bytes, length: int) -> None:
        pass

    async def unstick(self) -> None:
        pass

    async def stalled(self, data: bytes) -> None:
        async with self.lock:
            if data:
                await self.endpoint.write(data)
            rest = self.queue.take_all()
            await self.remote.unlink_all([urb for urb, _ in rest])
            await clear_remote_halt(self.remote, self.address)
            await self.endpoint.halt()
            self.plan.requeue(self.address, [length for _, length in rest])


class InPump(_Pump):
    """Remote IN endpoint → gadget IN endpoint, with read-ahead.

    Gadget writes are queued, up to ``QUEUED_WRITES`` of them, so the controller has the next
    data as soon as the host has taken the previous (FunctionFS's AIO; other backends write
    one at a time).
    """

    pinned = False  # a guessed URB got stuck: one packet per URB from now on

    def __init__(
        self, remote: RemoteDevice, endpoint: GadgetEndpoint, plan: Plan, depth: int, log: Log
    ) -> None:
        super().__init__(remote, endpoint, plan, depth, log)
        self.writes: deque[QueuedWrite] = deque()

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            for write in self.writes:
                write.cancel()
            self.writes.clear()

    async def deliver(self, data: bytes) -> None:
        """Queue ``data`` for the host; waits while ``QUEUED_WRITES`` are ahead of it."""
        write = self.endpoint.queue_write(data)
        self.writes.append(write)
        # A write that is not queued yet is made when waited for: at once, then.
        await self._wait_writes(QUEUED_WRITES if write.queued else 0)

    async def drain(self) -> None:
        """Wait until the host has taken everything queued."""
        await self._wait_writes(0)

    async def _wait_writes(self, ahead: int) -> None:
        """Wait for the oldest queued writes until at most ``ahead`` remain."""
        while len(self.writes) > ahead:
            await self.writes[0].wait()
            self.writes.popleft()

    async def stalled(self, data: bytes) -> None:
        # A controller halts an IN endpoint only once its queue is empty.
        await self.drain()
        await super().stalled(data)

    async def post_loop(self) -> None:
        while True:
            # Nothing here yields unless it has to wait, so the URBs posted in one pass
            # leave in one send.
            length = await self.plan.next_in(self.address)
            await self.queue.refill(max(1, self.queue.depth // 2))
            await _acquire(self.queue.slots)
            await _acquire(self.lock)
            try:
                if self.pinned:  # decided before a stuck URB was taken back
                    length = min(length, self.packet)
                urb = await self.remote.post(
                    self.number, Direction.IN, length, interval=self.interval
                )
                self.queue.append(urb, length)
            finally:
                self.lock.release()

    async def completed(self, data: bytes, length: int) -> None:
        # The plan hears of IN completions only: an OUT URB's says nothing of IN data.
        self.plan.saw_in(self.address, length, len(data))
        # URBs that were filled exactly end on a full packet and end no transfer, so what
        # follows them may go out in the same write: the host receives the same packets,
        # with one gadget request instead of several (a BOT command's data and status).
        chunks = [data]
        total = len(data)
        while len(data) == length and total < MAX_GADGET_WRITE and self.queue.urbs:
            urb, next_length = self.queue.urbs[0]
            if not urb.succeeded:
                break
            data, length = urb.result().data, next_length
            self.queue.pop()
            self.plan.saw_in(self.address, length, len(data))
            chunks.append(data)
            total += len(data)
        await self.deliver(b"".join(chunks) if len(chunks) > 1 else data)
        ended_by_zlp = len(data) < length and len(data) % self.packet == 0
        if ended_by_zlp and (data or len(chunks) > 1):
            await self.deliver(b"")  # the ZLP the device ended the transfer with

    async def unstick(self) -> None:
        """The head URB's length was a guess the device did not fill: take it back."""
        async with self.lock:
            self.pinned = True
            self.plan.pin(self.address)
            rest = self.queue.take_all()
            head, length = rest[0]
            await self.remote.unlink_all([urb for urb, _ in rest])
            settled = head.settled_with()
            status, salvaged = settled if settled is not None else (None, b"")
            where = f"endpoint 0x{self.address:02x}"
            if status == 0:  # it completed as the unlink crossed it
                await self.completed(salvaged, length)
            elif salvaged:
                await self.deliver(salvaged)
            self.log(
                f"{where}: a {length}-byte URB was not filled within {self.plan.watchdog:g} s;"
                f" unlinked it ({len(salvaged)} bytes came back with the unlink; a server"
                " that drops an unlinked URB's data loses what it held), one packet per URB"
                " from now on"
            )


class OutPump(_Pump):
    """Gadget OUT endpoint → remote OUT endpoint, each host transfer one URB."""

    async def post_loop(self) -> None:
        # f_fs serves one call at a time per endpoint file: a read left pending would hold
        # off the halt after a remote stall until the host's next transfer, which the
        # controller would acknowledge. So read only once the previous URB is settled.
        # Data the host has announced (a Bulk-Only data-out stage, after its CBW) is read while
        # the URB before it is still in flight; anything else waits for every URB before it.
        while True:
            await self.queue.slots.acquire()
            if not self.plan.announced_out(self.address):
                await self.queue.drained()
            async with self.lock:
                data = await self.endpoint.read(self.plan.next_out(self.address))
                self.plan.saw_out(self.address, data)
                urb = await self.remote.post(
                    self.number, Direction.OUT, data=data, interval=self.interval, flush=True
                )
                self.queue.append(urb, len(data))

    async def stalled(self, data: bytes) -> None:
        async with self.lock:
            # The host's transfers after the stalled one were acknowledged by the controller
            # already; the device refused them as it would have refused them directly.
            rest = self.queue.take_all()
            await self.remote.unlink_all([urb for urb, _ in rest])
            await clear_remote_halt(self.remote, self.address)
            await self.endpoint.halt()


class PipelinedOutPump(OutPump):
    """Gadget OUT endpoint → remote OUT endpoint, packets forwarded as they arrive."""

    reader: PacketReader | None = None
    stalls = 0  # bumped by every stall: packets taken before it are not forwarded

    async def post_loop(self) -> None:
        ring = max(1, min(MAX_RING, ADAPTIVE_MAX // self.packet))
        async with self.endpoint.packet_reader(ring) as reader:
            self.reader = reader
            while True:
                runs = await reader.take()  # each one URB
                stalls = self.stalls
                for data in runs:
                    await _acquire(self.queue.slots)
                    await _acquire(self.lock)
                    try:
                        if stalls != self.stalls:
                            self.queue.slots.release()
                            break
                        urb = await self.remote.post(
                            self.number, Direction.OUT, data=data, interval=self.interval
                        )
                        self.queue.append(urb, len(data))
                    finally:
                        self.lock.release()

    async def stalled(self, data: bytes) -> None:
        self.stalls += 1
        await super().stalled(data)
        if self.reader is not None:
            # Packets the controller took after the stalled one belong to the failed
            # transfer: the device would have refused them.
            self.reader.discard()


def make_pump(
    remote: RemoteDevice, endpoint: GadgetEndpoint, plan: Plan, depth: int, log: Log
) -> _Pump:
    if endpoint.descriptor.b_endpoint_address & 0x80:
        return InPump(remote, endpoint, plan, depth, log)
    if plan.pipelined_out:
        return PipelinedOutPump(remote, endpoint, plan, depth, log)
    return OutPump(remote, endpoint, plan, 2, log)  # the second only for announced data


__all__ = [
    "GONE",
    "TRANSIENT",
    "InPump",
    "OutPump",
    "PipelinedOutPump",
    "clear_remote_halt",
    "make_pump",
]
