"""Races at the edges of libusb calls, the handle shared between transfers and resets, and
an export refused through its return code."""

from __future__ import annotations

import threading
import time

import pytest
import trio
import trio.testing

from tests.server.harness import FAST, bed, disk
from usbip_gadget._errors import ImportRefused
from usbip_gadget.protocol import (
    CmdSubmit,
    Connection,
    Direction,
    ExportReply,
    ExportRequest,
    Role,
)
from usbip_gadget.server import EndpointInfo, Moved
from usbip_gadget.server._pyusb import _SharedLock
from usbip_gadget.server._transfer import ETIMEDOUT, Threads, _read, _Run, _send
from usbip_gadget.usb import TransferType

pytestmark = pytest.mark.timeout(30)

BULK_IN = EndpointInfo(0x81, TransferType.BULK, 512)
BULK_OUT = EndpointInfo(0x02, TransferType.BULK, 512)


class _Scripted:
    """A device whose calls return what the test lists, in order; records what it was asked."""

    def __init__(self, results: list[Moved]) -> None:
        self.results = results
        self.calls: list[tuple[int, int | bytes]] = []

    def read(self, address: int, length: int, timeout: float) -> Moved:
        self.calls.append((address, length))
        return self.results.pop(0)

    def write(self, address: int, data: bytes, timeout: float) -> Moved:
        self.calls.append((address, data))
        return self.results.pop(0)


def _run() -> _Run:
    return _Run(Threads(2), FAST, lambda: False)


@pytest.mark.parametrize(
    ("data", "total"),
    [
        (bytes(1024), 1024),  # everything asked for came in as the time ran out
        (bytes(700), 4096),  # a short packet ended it as the time ran out
    ],
)
async def test_a_read_that_timed_out_having_finished_is_complete(data: bytes, total: int) -> None:
    device = _Scripted([Moved.received(data, ETIMEDOUT)])
    cmd = CmdSubmit(1, 0x10002, Direction.IN, 1, total)
    moved = await _read(device, cmd, BULK_IN, _run())  # type: ignore[arg-type]
    assert (moved.status, moved.data) == (0, data)
    assert len(device.calls) == 1  # no further read that would take the next transfer's data


async def test_a_read_that_timed_out_on_whole_packets_goes_on() -> None:
    device = _Scripted([Moved.received(bytes(512), ETIMEDOUT), Moved.received(bytes(100))])
    cmd = CmdSubmit(1, 0x10002, Direction.IN, 1, 4096)
    moved = await _read(device, cmd, BULK_IN, _run())  # type: ignore[arg-type]
    assert (moved.status, len(moved.data)) == (0, 612)
    assert device.calls == [(0x81, 4096), (0x81, 4096 - 512)]


async def test_a_zero_length_read_that_timed_out_waits_for_its_packet() -> None:
    device = _Scripted([Moved.received(b"", ETIMEDOUT), Moved.received(b"")])
    cmd = CmdSubmit(1, 0x10002, Direction.IN, 1, 0)
    moved = await _read(device, cmd, BULK_IN, _run())  # type: ignore[arg-type]
    assert moved.status == 0
    assert len(device.calls) == 2


async def test_a_write_that_timed_out_having_sent_everything_sends_nothing_more() -> None:
    device = _Scripted([Moved(ETIMEDOUT, length=31)])
    moved = await _send(device, BULK_OUT, bytes(31), _run())  # type: ignore[arg-type]
    assert (moved.status, moved.length) == (0, 31)
    assert device.calls == [(0x02, bytes(31))]  # no extra zero-length packet


async def test_a_zero_length_write_that_timed_out_is_tried_again() -> None:
    device = _Scripted([Moved(ETIMEDOUT), Moved(0)])
    moved = await _send(device, BULK_OUT, b"", _run())  # type: ignore[arg-type]
    assert moved.status == 0
    assert device.calls == [(0x02, b""), (0x02, b"")]


def test_a_change_waits_for_the_transfers_and_holds_off_new_ones() -> None:
    lock = _SharedLock()
    events: list[str] = []
    inside = threading.Event()

    def transfer(name: str, hold: float) -> None:
        with lock.shared():
            events.append(f"{name} in")
            inside.set()
            time.sleep(hold)
            events.append(f"{name} out")

    def change() -> None:
        with lock.exclusive():
            events.append("change")
            time.sleep(0.05)
            events.append("change done")

    first = threading.Thread(target=transfer, args=("t1", 0.1))
    first.start()
    inside.wait(5)
    changer = threading.Thread(target=change)
    changer.start()
    time.sleep(0.02)
    late = threading.Thread(target=transfer, args=("t2", 0))
    late.start()
    for thread in (first, changer, late):
        thread.join(5)
    assert events == ["t1 in", "t1 out", "change", "change done", "t2 in", "t2 out"]


async def test_an_export_refused_by_its_return_code_is_refused() -> None:
    gadget_end, device_end = trio.testing.memory_stream_pair()

    async def refuse_by_return_code() -> None:
        conn = Connection(Role.HOST)
        while not isinstance(conn.next_event(), ExportRequest):
            conn.receive_data(await gadget_end.receive_some(4096))
        await gadget_end.send_all(conn.send(ExportReply(0, returncode=1)))

    async with bed(disk()) as test_bed:
        test_bed.nursery.start_soon(refuse_by_return_code)
        with trio.fail_after(5), pytest.raises(ImportRefused, match="return code 1"):
            await test_bed.server.export_to(device_end, "1-1", "gadget")
        assert test_bed.server.claimed == frozenset()
        assert not test_bed.lines("exported")
