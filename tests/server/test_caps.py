"""Listening within caps: a flood of idle connections, a connection over a cap, and accept(2)
running out of descriptors, against ``serve`` over real TCP on loopback; and the optional
idle limit of the URB phase."""

from __future__ import annotations

import errno
import os
import resource
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing

from tests.server.harness import DISK_IN, RawClient, bed, disk
from usbip_gadget._net import ACCEPT_BACKOFF_S, ConnectionLimits, serve_capped
from usbip_gadget.client import fetch_devlist
from usbip_gadget.protocol import CmdSubmit, Direction, RetSubmit
from usbip_gadget.server import Selection, ServeOptions, serve
from usbip_gadget.testing import FakeSource

pytestmark = pytest.mark.timeout(60)

IDLE = 1200
HOSTILE_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def idle_connections_that_fit() -> int:
    """``IDLE``, the soft fd limit raised for it if need be; fewer if the hard limit is low
    (each idle connection may cost two descriptors here: the client's and the server's)."""
    wanted = 2 * IDLE + open_fds() + 100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raise_to = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raise_to, hard))
        soft = raise_to
    return min(IDLE, (soft - open_fds() - 100) // 2)


@asynccontextmanager
async def serving(options: ServeOptions, log: list[str]) -> AsyncIterator[int]:
    run = partial(serve, FakeSource([disk()]), Selection.of(busids=["1-1"]), port=0)
    async with trio.open_nursery() as nursery:
        yield await nursery.start(partial(run, options=options, log=log.append))
        nursery.cancel_scope.cancel()


async def connect_from(source: str, port: int) -> trio.socket.SocketType:
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    return sock


async def test_a_device_list_is_answered_at_once_while_1200_idle_connections_are_open() -> None:
    count = idle_connections_that_fit()
    assert count >= 500, "too few descriptors for a meaningful flood"
    log: list[str] = []
    idle: list[trio.socket.SocketType] = []
    with trio.fail_after(50):
        async with serving(ServeOptions(), log) as port:
            before = open_fds()
            try:
                for i in range(count):  # from four other addresses, none of which sends
                    idle.append(await connect_from(HOSTILE_ADDRESSES[i % 4], port))
                start = trio.current_time()
                devices = await fetch_devlist("127.0.0.1", port, timeout=5)
                assert trio.current_time() - start < 1.0
                # Accepted in order: every idle one has been accepted (and most closed) by now.
                held_by_server = open_fds() - before - count
            finally:
                for sock in idle:
                    sock.close()
    assert [d.device.busid for d in devices] == ["1-1"]
    assert held_by_server <= len(HOSTILE_ADDRESSES) * ServeOptions().max_per_address
    refusals = [line for line in log if line.startswith("refused a connection")]
    assert len(refusals) == 1  # one line for the burst


async def test_connections_over_a_cap_are_closed_at_once_and_slots_come_back() -> None:
    log: list[str] = []
    options = ServeOptions(max_connections=3, max_per_address=2)
    with trio.fail_after(10):
        async with serving(options, log) as port:
            first = [await connect_from("127.0.0.1", port) for _ in range(2)]
            over = await connect_from("127.0.0.1", port)  # a third from the same address
            assert await over.recv(1) == b""
            other = await connect_from("127.0.0.2", port)  # another address still gets in
            full = await connect_from("127.0.0.3", port)  # but three are open in all
            assert await full.recv(1) == b""
            first[0].close()
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(1):  # a slot has come back: answered, not closed
                assert len(await fetch_devlist("127.0.0.1", port, timeout=5)) == 1
            for sock in (*first, over, other, full):
                sock.close()
    refusals = [line for line in log if line.startswith("refused")]
    assert refusals == [
        "refused a connection from 127.0.0.1: 2 open from there"
        " (like ones are not logged until 5 s pass)"
    ]


class _ExhaustedListener(trio.abc.Listener[trio.SocketStream]):
    """accept(2) failing with EMFILE ``failures`` times, then waiting forever."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def accept(self) -> trio.SocketStream:
        await trio.lowlevel.checkpoint()
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_running_out_of_descriptors_backs_off_and_logs_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    listener = _ExhaustedListener(30)

    async def handler(stream: trio.SocketStream) -> None:
        raise AssertionError("nothing was accepted")

    start = trio.current_time()
    with trio.move_on_after(10):
        await serve_capped(handler, [listener], limits=ConnectionLimits(), log=log.append)
    assert listener.calls == 31
    # Not a busy loop: each failure paused accepting.
    assert trio.current_time() - start >= 30 * ACCEPT_BACKOFF_S
    assert log == [
        "cannot accept connections now: Too many open files"
        " (like ones are not logged until 5 s pass)"
    ]


async def test_an_idle_client_is_dropped_only_when_asked_and_never_with_a_urb_waiting(
    autojump_clock: trio.abc.Clock,
) -> None:
    d = disk()
    options = ServeOptions(slice_timeout=0.02, idle_timeout=30)
    async with bed(d, options=options) as b:
        raw = RawClient(b.connect("quiet"))
        await raw.import_("1-1")
        start = trio.current_time()
        await raw.send(CmdSubmit(1, (1 << 16) | 2, Direction.IN, 1, 512))  # nothing comes
        await trio.sleep(100)
        assert not b.done["quiet"].is_set()  # a URB waiting for the device is not idleness
        d.send_in(DISK_IN, bytes(13))
        assert isinstance(await raw.receive(), RetSubmit)
        answered = trio.current_time()
        await b.done["quiet"].wait()
        assert trio.current_time() - answered == pytest.approx(30, abs=1)
        assert trio.current_time() - start > 100
    assert b.lines("released") == ["released 1-1 (0781:5567) from quiet: idle for 30 s"]


async def test_without_an_idle_limit_a_quiet_client_stays(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with bed(disk()) as b:
        raw = RawClient(b.connect("quiet"))
        await raw.import_("1-1")
        await trio.sleep(3600)
        assert not b.done["quiet"].is_set()


async def test_a_new_connection_has_seconds_not_minutes_to_ask(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with bed(disk(), options=ServeOptions()) as b:
        b.connect("silent")
        start = trio.current_time()
        await b.done["silent"].wait()
        assert trio.current_time() - start == pytest.approx(5)
    assert b.log == ["silent: dropped: no request within 5 s"]
