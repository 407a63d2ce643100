"""usbredir end to end, both roles ours: ``serve --usbredir``'s ``RedirServer`` on in-memory
devices, and the client's ``open_redirected_device`` (what ``attach usbredir://`` uses),
over in-memory streams and over real TCP."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing

from tests.server.harness import FAST, disk, keyboard, select_all
from usbip_gadget import NoMatchingDevice, TransportError, Unlinked, UsbipTimeout
from usbip_gadget._groups import collapse_single
from usbip_gadget.bridge._attach import Plug, plug_and_bridge
from usbip_gadget.client import (
    DeviceMatch,
    RemoteDevice,
    enumerate_device,
    open_redirected_device,
    parse_redir_url,
)
from usbip_gadget.protocol import NEED_DATA, Direction
from usbip_gadget.server import RedirServer, serve_redirected
from usbip_gadget.testing import FakeDevice, FakeGadget, FakeSource
from usbip_gadget.usb import DeviceSnapshot, SetupPacket
from usbip_gadget.usbredir import LINK_CAPS, Connection, DeviceConnect, Role, StopInterruptReceiving

pytestmark = pytest.mark.timeout(30)

DISK_IN, DISK_OUT = 0x81, 0x02
_IN = Direction.IN


@asynccontextmanager
async def redirected(
    *devices: FakeDevice, log: list[str] | None = None
) -> AsyncIterator[tuple[int, list[str]]]:
    """``serve_redirected`` on 127.0.0.1 for the block; yields its port and its log."""
    lines = log if log is not None else []
    with collapse_single():
        async with trio.open_nursery() as nursery:
            serving = partial(
                serve_redirected, FakeSource(devices), select_all(*devices), host="127.0.0.1",
                port=0, options=FAST, log=lines.append,
            )  # fmt: skip
            port = await nursery.start(serving)
            yield port, lines
            nursery.cancel_scope.cancel()


async def test_a_disk_is_enumerated_as_it_is_over_usb_ip() -> None:
    device = disk()
    with trio.fail_after(10):
        async with (
            redirected(device) as (port, log),
            open_redirected_device("127.0.0.1", port, timeout=5) as remote,
        ):
            assert remote.device.path == f"usbredir://127.0.0.1:{port}"
            assert (remote.device.id_vendor, remote.device.speed) == (0x0781, 3)
            snapshot = await enumerate_device(remote, timeout=5)
    assert snapshot.device_raw == device.snapshot.device_raw
    assert snapshot.configurations_raw == device.snapshot.configurations_raw
    assert snapshot.strings == device.snapshot.strings
    assert any("redirected 1-1 (0781:5567) to 127.0.0.1" in line for line in log), log


async def test_bulk_both_ways_and_set_configuration_reach_the_device() -> None:
    device = disk()
    with trio.fail_after(10):
        async with _served(device) as remote:
            await remote.control(SetupPacket.set_configuration(1))
            device.send_in(DISK_IN, b"x" * 1000)
            assert await remote.transfer_in(1, 1024) == b"x" * 1000
            assert await remote.transfer_out(2, b"y" * 700) == 700
            # A long transfer: 32-bit bulk lengths are in use.
            device.send_in(DISK_IN, b"z" * 70000)
            assert await remote.transfer_in(1, 70000) == b"z" * 70000
    assert b"".join(device.out_packets[DISK_OUT]) == b"y" * 700
    assert ("set_configuration", 1) in device.requests


async def test_an_unlinked_transfer_is_cancelled_on_the_device_side() -> None:
    device = disk()
    with trio.fail_after(10):
        async with _served(device) as remote:
            urb = await remote.post(1, _IN, 512)
            await trio.sleep(0.1)
            await remote.unlink_all([urb])
            with pytest.raises(Unlinked):
                urb.result()
            # The endpoint still works after the cancel.
            device.send_in(DISK_IN, b"after")
            assert await remote.transfer_in(1, 512) == b"after"


async def test_a_keyboard_streams_its_reports_through_interrupt_receiving() -> None:
    device = keyboard()
    with trio.fail_after(10):
        async with _served(device) as remote:
            await remote.control(SetupPacket.set_configuration(1))
            device.feed(0x81, b"\x00\x00\x04\x00\x00\x00\x00\x00", bytes(8))
            assert await remote.transfer_in(1, 8) == b"\x00\x00\x04\x00\x00\x00\x00\x00"
            assert await remote.transfer_in(1, 8) == bytes(8)
            # Nothing pressed: the next URB waits.
            with trio.move_on_after(0.3) as waited:
                await remote.transfer_in(1, 8)
            assert waited.cancelled_caught


async def test_a_stalled_control_request_is_a_stall() -> None:
    device = disk()
    with trio.fail_after(10):
        async with _served(device) as remote:
            result = await remote.submit(
                0, _IN, 8, setup=SetupPacket(0xC0, 1, 0, 0, 8).pack(), check=False
            )
    assert result.status == -errno.EPIPE


async def test_the_device_unplugged_on_the_server_ends_the_session() -> None:
    device = disk()
    with trio.fail_after(10):
        async with _served(device) as remote:
            device.unplug()
            await remote.closed.wait()
    assert isinstance(remote.failure, TransportError)


async def test_each_connection_is_one_device_and_a_second_finds_none_free() -> None:
    device = disk()
    with trio.fail_after(10):
        async with (
            redirected(device) as (port, log),
            open_redirected_device("127.0.0.1", port, timeout=5),
        ):
            with pytest.raises(TransportError, match="before offering a device"):
                await _open_and_close(port, None)
    assert any("no selected device is free" in line for line in log), log


async def test_a_device_that_is_not_the_one_asked_for_is_refused() -> None:
    device = disk()
    with trio.fail_after(10):
        async with redirected(device) as (port, _log):
            other = DeviceMatch(vid_pid=(0x1234, 0x5678))
            with pytest.raises(NoMatchingDevice, match="offers 0781:5567, not 1234:5678"):
                await _open_and_close(port, other)
            match = DeviceMatch(vid_pid=(0x0781, 0x5567), serial="0001")
            async with open_redirected_device("127.0.0.1", port, match, timeout=5) as remote:
                assert remote.device.id_product == 0x5567


async def test_a_usb_host_that_offers_nothing_times_out_in_one_line() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            with pytest.raises(UsbipTimeout, match=r"offered no device within 0\.5 s"):
                await _open_and_close(port, None, timeout=0.5)
            nursery.cancel_scope.cancel()


async def test_attach_bridges_a_redirected_disk_into_a_gadget() -> None:
    device, opened = disk(), list[DeviceSnapshot]()

    @asynccontextmanager
    async def opener(
        snapshot: DeviceSnapshot, backend: object, *, udc: str, name: str
    ) -> AsyncIterator[FakeGadget]:
        opened.append(snapshot)
        yield FakeGadget(snapshot)

    log: list[str] = []
    plugged = trio.Event()
    with trio.fail_after(10):
        async with _served(device) as remote, trio.open_nursery() as nursery:
            plug = Plug("dummy_udc.1", opener=opener)
            origin = remote.device.path
            nursery.start_soon(plug_and_bridge, remote, plug, origin, log.append, plugged)
            await plugged.wait()
            nursery.cancel_scope.cancel()
    assert opened[0].device_raw == device.snapshot.device_raw
    assert any(line.startswith("plugged 0781:5567 (usbredir://127.0.0.1:") for line in log), log


@pytest.mark.parametrize(
    ("text", "expected"),
    [("usbredir://10.0.0.2:4000", ("10.0.0.2", 4000)), ("usbredir://[::1]:7", ("::1", 7)),
     ("10.0.0.2:4000", None)],
)  # fmt: skip
def test_usbredir_urls(text: str, expected: tuple[str, int] | None) -> None:
    assert parse_redir_url(text) == expected


@pytest.mark.parametrize("text", ["usbredir://host", "usbredir://:4", "usbredir://h:4/x"])
def test_bad_usbredir_urls_are_one_line(text: str) -> None:
    with pytest.raises(Exception, match="usbredir") as info:
        parse_redir_url(text)
    assert "\n" not in str(info.value)


# -- helpers -----------------------------------------------------------------------------------


@asynccontextmanager
async def _served(device: FakeDevice) -> AsyncIterator[RemoteDevice]:
    async with (
        redirected(device) as (port, _log),
        open_redirected_device("127.0.0.1", port, timeout=5) as remote,
    ):
        yield remote


async def _open_and_close(port: int, match: DeviceMatch | None, timeout: float = 5) -> None:
    async with open_redirected_device("127.0.0.1", port, match, timeout=timeout):
        pass


async def test_answers_a_usb_guest_does_not_read_are_counted_against_its_budget() -> None:
    """Packets the link answers itself (a stream stop) count like replies: a usb-guest that
    sends them and reads nothing is dropped once its budget is held."""
    device, log = disk(), list[str]()
    options = dataclasses.replace(FAST, max_pending_bytes=20_000)
    server = RedirServer(FakeSource([device]), select_all(device), options=options, log=log.append)
    client, server_end = trio.testing.lockstep_stream_pair()
    guest = Connection(Role.GUEST, caps=LINK_CAPS)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.handle, server_end, "flooder")
            nursery.start_soon(client.send_all, guest.hello())  # both sides send hello first
            while not isinstance(event := guest.next_event(), DeviceConnect):
                if event is NEED_DATA:
                    guest.receive_data(await client.receive_some(65536))
            stop = guest.send(StopInterruptReceiving(DISK_IN))
            with trio.move_on_after(2), contextlib.suppress(trio.BrokenResourceError):
                for _ in range(2000):  # until the server drops the connection
                    await client.send_all(stop * 10)
            await client.aclose()
    assert any("dropped: more than 20000 bytes in flight" in line for line in log), log
