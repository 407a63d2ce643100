"""listen's connection handling: one offer bridged at a time, the others refused "busy", and a
connection that offers nothing holds nothing."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.protocol.helpers import SAMPLE_DEVICE
from usbip_gadget.bridge._attach import Plug
from usbip_gadget.bridge._listen import Listener, ListenOptions
from usbip_gadget.client import RemoteDevice
from usbip_gadget.protocol import (
    NEED_DATA,
    Connection,
    ExportReply,
    ExportRequest,
    OpStatus,
    Role,
)

pytestmark = pytest.mark.timeout(30)


class _Bridges:
    """Stands in for plug_and_bridge: records each device and holds it until released."""

    def __init__(self) -> None:
        self.plugged: list[str] = []
        self.release = trio.Event()
        self.started = trio.Event()

    async def __call__(
        self, remote: RemoteDevice, plug: Plug, origin: str, log: object, plugged: trio.Event
    ) -> None:
        self.plugged.append(remote.device.busid)
        self.started.set()
        await self.release.wait()


async def _offer(listener: Listener, nursery: trio.Nursery) -> tuple[trio.abc.Stream, Connection]:
    """A device side that has sent its offer over a new connection to ``listener``."""
    ours, theirs = trio.testing.memory_stream_pair()
    nursery.start_soon(listener.handle, theirs)
    conn = Connection(Role.DEVICE)
    await ours.send_all(conn.send(ExportRequest(SAMPLE_DEVICE)))
    return ours, conn


async def _reply(stream: trio.abc.Stream, conn: Connection) -> object:
    while (event := conn.next_event()) is NEED_DATA:
        conn.receive_data(await stream.receive_some(4096))
    return event


async def test_a_second_offer_is_refused_busy_then_taken_once_the_first_ends() -> None:
    log: list[str] = []
    bridges = _Bridges()
    listener = Listener(ListenOptions(timeout=5), "dummy_udc.1", log.append, bridges)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            first, first_conn = await _offer(listener, nursery)
            assert await _reply(first, first_conn) == ExportReply()
            await bridges.started.wait()
            second, second_conn = await _offer(listener, nursery)
            assert await _reply(second, second_conn) == ExportReply(OpStatus.DEV_BUSY)
            assert any("already replays one" in line for line in log)
            bridges.release.set()  # the first device is unplugged
            await trio.testing.wait_all_tasks_blocked()
            third, third_conn = await _offer(listener, nursery)
            assert await _reply(third, third_conn) == ExportReply()
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert bridges.plugged == ["1-1", "1-1"]


async def test_a_connection_that_offers_nothing_holds_nothing() -> None:
    log: list[str] = []
    bridges = _Bridges()
    listener = Listener(ListenOptions(timeout=5), "dummy_udc.1", log.append, bridges)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _silent, silent_end = trio.testing.memory_stream_pair()
            nursery.start_soon(listener.handle, silent_end)
            await trio.testing.wait_all_tasks_blocked()
            stream, conn = await _offer(listener, nursery)
            assert await _reply(stream, conn) == ExportReply()
            await bridges.started.wait()
            nursery.cancel_scope.cancel()
    assert bridges.plugged == ["1-1"]


async def test_a_silent_connection_is_dropped_after_the_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    listener = Listener(ListenOptions(timeout=3), "dummy_udc.1", log.append, _Bridges())
    _silent, silent_end = trio.testing.memory_stream_pair()
    await listener.handle(silent_end)
    assert log == ["peer: no device offered within 3 s"]


async def test_an_offer_must_come_within_seconds_whatever_the_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    listener = Listener(ListenOptions(timeout=60), "dummy_udc.1", log.append, _Bridges())
    _silent, silent_end = trio.testing.memory_stream_pair()
    await listener.handle(silent_end)
    assert log == ["peer: no device offered within 5 s"]
