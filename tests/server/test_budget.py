"""The URB phase's memory budget bounds what a client makes the server hold, in real bytes:
queued replies, unlinks waiting for their URB, and URBs unlinked while still queued."""

from __future__ import annotations

import contextlib
import socket
import struct
import tracemalloc
from collections.abc import Iterator
from functools import partial

import pytest
import trio

from tests.server.harness import DISK_IN, DISK_OUT, RawClient, bed, disk
from usbip_gadget.server import Selection, ServeOptions, serve
from usbip_gadget.testing import FakeSource

pytestmark = pytest.mark.timeout(60)

DEVID = (1 << 16) | 2
_HEADER = struct.Struct(">IIIII")  # command, seqnum, devid, direction, ep
_SUBMIT_REST = struct.Struct(">IiiiI8s")  # flags, length, start_frame, packets, interval, setup
_UNLINK_REST = struct.Struct(">I24x")  # unlink_seqnum
CMD_SUBMIT, CMD_UNLINK = 1, 2
OUT, IN = 0, 1
MiB = 1 << 20


def submit(seqnum: int, ep: int, length: int, *, direction: int, data: bytes = b"") -> bytes:
    """A CMD_SUBMIT as raw bytes (no client state: the client's own memory stays flat)."""
    head = _HEADER.pack(CMD_SUBMIT, seqnum, DEVID, direction, ep)
    return head + _SUBMIT_REST.pack(0, length, 0, -1, 0, bytes(8)) + data


def unlink(seqnum: int, target: int) -> bytes:
    return _HEADER.pack(CMD_UNLINK, seqnum, DEVID, OUT, 0) + _UNLINK_REST.pack(target)


def flood(start: int, count: int) -> bytes:
    """Per step: a bulk IN URB, its unlink, and an unlink of a URB that never was."""
    batch = bytearray()
    for seqnum in range(start, start + 3 * count, 3):
        batch += submit(seqnum, DISK_IN & 0x0F, 512, direction=IN)
        batch += unlink(seqnum + 1, seqnum)
        batch += unlink(seqnum + 2, 0x7FFF0000)
    return bytes(batch)


@contextlib.contextmanager
def traced() -> Iterator[list[int]]:
    """tracemalloc on; yields [growth of the peak over the start] once the block is done."""
    tracemalloc.start()
    result: list[int] = []
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        yield result
        result.append(tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()


async def _flood_until_dropped(stream: trio.SocketStream, released: trio.Event) -> None:
    seqnum, sent = 1, 0
    with contextlib.suppress(trio.BrokenResourceError):
        while not released.is_set() and sent < 64 * MiB:
            batch = flood(seqnum, 300)
            await stream.send_all(batch)  # a checkpoint: the server reads meanwhile
            seqnum, sent = seqnum + 900, sent + len(batch)
    await released.wait()


async def test_a_client_flooding_unlinks_and_submits_holds_no_more_than_the_budget() -> None:
    # Measured on a real server over TCP: a client that sends URBs and unlinks as fast as it
    # can and reads none of the answers. The server's memory (Python's, all of it) grows by
    # no more than the budget and its read buffers before the client is dropped.
    budget = 2 * MiB
    log: list[str] = []
    released = trio.Event()

    def record(line: str) -> None:
        log.append(line)
        if line.startswith("released"):
            released.set()

    options = ServeOptions(slice_timeout=0.02, max_pending_bytes=budget, send_timeout=30)
    run = partial(serve, FakeSource([disk()]), Selection.of(busids=["1-1"]), port=0)
    with trio.fail_after(50):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(run, options=options, log=record))
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            async with stream:
                await RawClient(stream).import_("1-1")
                with traced() as growth:
                    await _flood_until_dropped(stream, released)
            nursery.cancel_scope.cancel()
    assert f"dropped: more than {budget} bytes in flight" in log[-1]
    # Read buffers: 256 KiB received at once, and up to as much waiting to be parsed.
    print(f"growth {growth[0] / MiB:.2f} MiB")
    assert growth[0] < 1.25 * budget + 0.75 * MiB


async def test_unlinked_urbs_still_queued_count_until_their_worker_drops_them() -> None:
    # The OUT endpoint NAKs, so its worker is stuck on the first URB: every later URB waits
    # in the endpoint's queue, and unlinking it answers at once but cannot free its data
    # before the worker gets to it. Those data count, so the client is dropped.
    d = disk()
    d.hold_out(DISK_OUT, 0)
    chunk = bytes(128 * 1024)
    options = ServeOptions(slice_timeout=0.02, max_pending_bytes=MiB)
    async with bed(d, options=options) as b:
        with trio.fail_after(10):
            raw = RawClient(b.connect("hoarder"))
            await raw.import_("1-1")
            ep = DISK_OUT & 0x0F
            await raw.stream.send_all(submit(1, ep, len(chunk), direction=OUT, data=chunk))
            with contextlib.suppress(trio.BrokenResourceError):
                for seqnum in range(2, 66, 2):  # 32 URBs of 128 KiB: 4 MiB if nothing counted
                    data = submit(seqnum, ep, len(chunk), direction=OUT, data=chunk)
                    await raw.stream.send_all(data + unlink(seqnum + 1, seqnum))
                    await trio.testing.wait_all_tasks_blocked()
            await b.done["hoarder"].wait()
    assert b.lines("released") == [
        f"released 1-1 (0781:5567) from hoarder: dropped: more than {MiB} bytes in flight"
    ]


async def test_unlinks_waiting_for_a_running_urb_count() -> None:
    # A URB in progress is answered when its current bounded step ends; unlinks of it that
    # arrive meanwhile wait with it, and each one counts.
    d = disk()
    options = ServeOptions(slice_timeout=1.0, max_pending_bytes=64 * 1024)
    async with bed(d, options=options) as b:
        with trio.fail_after(10):
            raw = RawClient(b.connect("repeater"))
            await raw.import_("1-1")
            await raw.stream.send_all(submit(1, DISK_IN & 0x0F, 512, direction=IN))
            await trio.testing.wait_all_tasks_blocked()
            with contextlib.suppress(trio.BrokenResourceError):
                await raw.stream.send_all(b"".join(unlink(s, 1) for s in range(2, 1002)))
            await b.done["repeater"].wait()
    assert "dropped: more than 65536 bytes in flight" in b.lines("released")[0]
