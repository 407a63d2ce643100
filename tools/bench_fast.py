"""``make bench-fast``: the CPU the bridge spends per URB, without root or a VM.

URBs go through the real client (``RemoteDevice``), the real codec and the real pumps
(``make_pump``, as ``attach`` starts one per data endpoint) over TCP on 127.0.0.1 to a server
in a child process whose device answers at once: its IN endpoint always has data, its OUT
endpoint takes everything. By default that server is a lean one that answers every URB a
receive brings in one send (``_bench_server``), as a kernel server would, so that the figures
are the bridge's; ``--server serve`` uses the project's own ``serve`` instead. The gadget
side is a stub endpoint whose ``write`` counts bytes and whose ``read`` returns a prepared
transfer, each with one trio checkpoint, the least any real endpoint call costs.

CPU is ``time.process_time()`` of this (bridge) process alone, all its threads, measured over
each case's window after a warm-up; the server's CPU is not in it. Wall-clock rates are bound
by the server as much as by the bridge.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import multiprocessing
import os
import platform
import pstats
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection

import trio
from _bench_server import run_fast_server

from usbip_gadget.bridge import DEFAULT_DEPTH
from usbip_gadget.bridge._plans import Plan, StreamPlan
from usbip_gadget.bridge._pumps import make_pump
from usbip_gadget.client import RemoteDevice, open_connection, open_remote_device
from usbip_gadget.gadget import GadgetEndpoint
from usbip_gadget.server import Moved, Selection, serve
from usbip_gadget.testing import FakeDevice, FakeSource
from usbip_gadget.usb import DescriptorType, DeviceSnapshot, EndpointDescriptor, SetupPacket, Speed

BUSID = "1-1"
LOOPBACK = "127.0.0.1"
# A high-speed vendor device: bulk IN 0x81 and bulk OUT 0x02 of 512 bytes.
DEVICE_RAW = bytes.fromhex("120100020000004034127856000100000001")
CONFIG_RAW = bytes.fromhex(
    "0902200001010080fa"  # one interface, bConfigurationValue 1
    "0904000002ff000000"  # interface 0: vendor class, two endpoints
    "07058102000200"  # bulk IN 0x81, 512 bytes
    "07050202000200"  # bulk OUT 0x02, 512 bytes
)
BULK_IN, BULK_OUT = 0x81, 0x02
BIG = 64 * 1024
WARMUP_S = 0.3
CASE_S = 2.5
TIMEOUT_S = 10.0
MB = 1_000_000


def snapshot() -> DeviceSnapshot:
    return DeviceSnapshot.from_raw(BUSID, Speed.HIGH, DEVICE_RAW, (CONFIG_RAW,))


# ---------------------------------------------------------------- the server (child process)


class EagerDevice(FakeDevice):
    """The in-memory device, answering bulk transfers at once: IN always full, OUT all taken."""

    _DATA = bytes(range(256)) * (BIG // 256)

    def read(self, address: int, length: int, timeout: float) -> Moved:
        return Moved.received(self._DATA[:length] if length <= BIG else bytes(length))

    def write(self, address: int, data: bytes, timeout: float) -> Moved:
        return Moved(0, length=len(data))


def run_fast(report: Connection) -> None:
    """The lean server (``_bench_server``) with the eager device's record."""
    run_fast_server(report, BUSID, EagerDevice(snapshot()).exported().device)


def run_server(report: Connection) -> None:
    """Serve the eager device on a free port of 127.0.0.1 and send the port to ``report``."""

    async def main() -> None:
        source = FakeSource([EagerDevice(snapshot())])
        selection = Selection.of(busids=[BUSID])
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(serve, source, selection, host=LOOPBACK, port=0))
            report.send(port)

    trio.run(main)


# ---------------------------------------------------------------- the gadget side (this process)


@dataclass
class Count:
    urbs: int = 0
    bytes: int = 0


class Taken:
    """A queued write the stub host has taken: waiting for it costs one checkpoint."""

    queued = True

    async def wait(self) -> None:
        await trio.lowlevel.checkpoint()

    def cancel(self) -> None:
        pass


class StubEndpoint:
    """A ``GadgetEndpoint`` whose host takes IN data and sends OUT data as fast as it can.

    Every URB of the cases is full, so the URBs moved are the bytes over the URB length.
    """

    def __init__(self, descriptor: EndpointDescriptor, urb_length: int, count: Count) -> None:
        self._descriptor = descriptor
        self._urb_length = urb_length
        self._count = count
        self._out = bytes(max(BIG, urb_length))
        self._packet = self._out[: descriptor.max_packet_size]
        self._limit = 1

    @property
    def descriptor(self) -> EndpointDescriptor:
        return self._descriptor

    def _moved(self, size: int) -> None:
        self._count.bytes += size
        self._count.urbs += size // self._urb_length

    async def write(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self._moved(len(data))

    def queue_write(self, data: bytes) -> Taken:
        self._moved(len(data))
        return Taken()

    async def read(self, length: int) -> bytes:
        await trio.lowlevel.checkpoint()
        self._moved(length)
        return self._out[:length]

    @asynccontextmanager
    async def packet_reader(self, limit: int) -> AsyncIterator[StubEndpoint]:
        """OUT packet by packet: ``take`` gives ``limit`` packets at once, a host ahead."""
        self._limit = max(1, limit)
        yield self

    async def take(self) -> list[bytes]:
        await trio.lowlevel.checkpoint()
        self._moved(len(self._packet) * self._limit)
        return [self._packet] * self._limit

    def discard(self) -> int:
        return 0

    async def halt(self) -> None:
        raise AssertionError(f"endpoint 0x{self._descriptor.b_endpoint_address:02x} stalled")


class FixedPlan(StreamPlan):
    """The bridge's ``StreamPlan`` with every URB ``length`` bytes, as a Bulk-Only command's
    data stage is (and, like ``BulkOnlyPlan`` with lengths queued, no checkpoint)."""

    def __init__(self, endpoints: Iterable[EndpointDescriptor], length: int) -> None:
        super().__init__(endpoints)
        self._length = length

    async def next_in(self, address: int) -> int:
        return self._length

    def next_out(self, address: int) -> int:
        return self._length


# ---------------------------------------------------------------- the cases

Driver = Callable[[RemoteDevice, Count], Awaitable[None]]


def pump(address: int, urb_length: int) -> Driver:
    """A bridge pump between the stub endpoint ``address`` and the remote one."""

    async def drive(remote: RemoteDevice, count: Count) -> None:
        endpoints = {ep.b_endpoint_address: ep for ep in snapshot().configurations[0].endpoints()}
        descriptor = endpoints[address]
        endpoint: GadgetEndpoint = StubEndpoint(descriptor, urb_length, count)
        plan: Plan = StreamPlan(endpoints.values())  # the bridge's default plan
        if urb_length != descriptor.max_packet_size:
            plan = FixedPlan(endpoints.values(), urb_length)
        log = lambda line: print(f"pump: {line}", file=sys.stderr)  # noqa: E731
        await make_pump(remote, endpoint, plan, DEFAULT_DEPTH, log).run()

    return drive


async def control(remote: RemoteDevice, count: Count) -> None:
    """GET_DESCRIPTOR(DEVICE) one after another, as the bridge's ep0 loop forwards requests."""
    setup = SetupPacket.get_descriptor(DescriptorType.DEVICE, 0, 18)
    while True:
        data = await remote.control(setup, timeout=TIMEOUT_S)
        count.urbs += 1
        count.bytes += len(data)


CASES: dict[str, tuple[str, Driver]] = {
    "in-512": ("bulk IN, 512 B URBs", pump(BULK_IN, 512)),
    "in-64k": ("bulk IN, 64 KiB URBs", pump(BULK_IN, BIG)),
    "out-512": ("bulk OUT, 512 B URBs", pump(BULK_OUT, 512)),
    "out-64k": ("bulk OUT, 64 KiB URBs", pump(BULK_OUT, BIG)),
    "control": ("control IN, 18 B", control),
}


@dataclass(frozen=True)
class Result:
    urbs: int
    bytes: int
    wall: float
    cpu: float


async def measure(
    remote: RemoteDevice, driver: Driver, seconds: float, profiler: cProfile.Profile | None
) -> Result:
    count = Count()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver, remote, count)
        await trio.sleep(WARMUP_S)
        if profiler is not None:
            profiler.enable()
        urbs, size, wall, cpu = count.urbs, count.bytes, time.perf_counter(), time.process_time()
        await trio.sleep(seconds)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        result = Result(count.urbs - urbs, count.bytes - size, wall, cpu)
        if profiler is not None:
            profiler.disable()
        nursery.cancel_scope.cancel()
    return result


def line(label: str, r: Result) -> str:
    per_urb = r.cpu * 1e6 / r.urbs if r.urbs else float("nan")
    per_mb = r.cpu * 1e6 / (r.bytes / MB) if r.bytes else float("nan")
    return (
        f"{label:<24}{r.urbs:>9}{r.bytes / MB:>10.2f}{r.wall:>8.2f}"
        f"{per_urb:>12.1f}{per_mb:>13.0f}{r.urbs / r.wall:>10.0f}{100 * r.cpu / r.wall:>7.0f}"
    )


async def checkpoint_cost() -> float:
    """CPU µs of one trio checkpoint here: a yardstick to compare machines by."""
    count, start = 20_000, time.process_time()
    for _ in range(count):
        await trio.lowlevel.checkpoint()
    return (time.process_time() - start) * 1e6 / count


async def bench(port: int, names: list[str], seconds: float, profile: bool) -> None:
    print(f"yardstick: a trio checkpoint costs {await checkpoint_cost():.1f} µs CPU here")
    stream = await open_connection(LOOPBACK, port, timeout=TIMEOUT_S)
    async with stream, open_remote_device(stream, BUSID, timeout=TIMEOUT_S) as remote:
        await remote.control(SetupPacket.set_configuration(1), timeout=TIMEOUT_S)
        print(f"{'case':<24}{'URBs':>9}{'MB':>10}{'wall s':>8}"
              f"{'CPU µs/URB':>12}{'CPU µs/MB':>13}{'URBs/s':>10}{'CPU %':>7}")  # fmt: skip
        for name in names:
            label, driver = CASES[name]
            profiler = cProfile.Profile() if profile else None
            print(line(label, await measure(remote, driver, seconds, profiler)), flush=True)
            if profiler is not None:
                stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
                stats.sort_stats("tottime").print_stats(15)
                stats.sort_stats("cumulative").print_stats(15)


def header(server: str) -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        names = [ln.split(":")[1].strip() for ln in cpuinfo if ln.startswith("model name")]
        model = names[0] if names else model
    return (
        f"bench-fast: {platform.python_implementation()} {platform.python_version()}, "
        f"trio {trio.__version__}, {platform.system()} {platform.release()} "
        f"{platform.machine()}, {model}, {os.cpu_count()} CPUs\n"
        f"make_pump (read-ahead {DEFAULT_DEPTH}) and RemoteDevice.control over TCP to a server "
        f"({server}) in a child process; CPU: this process's process_time; MB = 10^6 bytes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", metavar="CASE", help=f"of {', '.join(CASES)}")
    parser.add_argument("--seconds", type=float, default=CASE_S, help="per case, after warm-up")
    parser.add_argument("--profile", action="store_true", help="cProfile each case's window")
    parser.add_argument(
        "--server", choices=("fast", "serve"), default="fast",
        help="fast: a lean server answering in batches (default); serve: usbip-gadget serve",
    )  # fmt: skip
    args = parser.parse_args()
    for name in args.cases:
        if name not in CASES:
            parser.error(f"no case {name!r}")
    context = multiprocessing.get_context("fork")  # before trio starts here
    receive, send = context.Pipe(duplex=False)
    target = run_fast if args.server == "fast" else run_server
    server = context.Process(target=target, args=(send,), daemon=True)
    server.start()
    try:
        if not receive.poll(TIMEOUT_S):
            raise SystemExit("bench-fast: the server did not start")
        port = receive.recv()
        print(header(args.server), flush=True)
        trio.run(bench, port, args.cases or list(CASES), args.seconds, args.profile)
    finally:
        server.terminate()
        server.join(TIMEOUT_S)


if __name__ == "__main__":
    main()
