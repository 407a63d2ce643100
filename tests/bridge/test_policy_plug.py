"""The device policy where it acts: ``attach`` and ``listen`` enumerate the device over
USB/IP (the real client against ``serve`` on in-memory devices) and a refused one never
reaches a gadget."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing

from tests.calls import Call
from tests.server.harness import FAST, bed, disk, keyboard
from tests.usb.vectors import MASS_STORAGE_CONFIG, MASS_STORAGE_DEVICE
from usbip_gadget import DeviceRefused
from usbip_gadget.bridge import DeviceGate, DevicePolicy, ListenOptions, parse_class_rule
from usbip_gadget.bridge._attach import AttachOptions, Plug, attach_to, plug_and_bridge
from usbip_gadget.bridge._listen import BridgeFn, Listener
from usbip_gadget.bridge._pumps import Log
from usbip_gadget.client import DeviceMatch, RemoteDevice
from usbip_gadget.gadget import Backend, GadgetBackend
from usbip_gadget.server import Selection, Server
from usbip_gadget.testing import FakeDevice, FakeGadget, FakeSource
from usbip_gadget.usb import DeviceSnapshot, Speed

pytestmark = pytest.mark.timeout(30)

UDC = "dummy_udc.1"
KEYBOARD_REFUSED = (
    "refused 1234:abcd (1-2 on server): interface 0 is HID (03:01:01); only --allow 1234:abcd"
    " or --allow-class 03 plugs it"
)


class Openings:
    """A ``GadgetOpener`` that records every gadget it is asked for and builds a fake one."""

    def __init__(self) -> None:
        self.opened: list[DeviceSnapshot] = []
        self._send, self._receive = trio.open_memory_channel[DeviceSnapshot](math.inf)

    @asynccontextmanager
    async def __call__(
        self, snapshot: DeviceSnapshot, backend: Backend, *, udc: str, name: str
    ) -> AsyncIterator[GadgetBackend]:
        self.opened.append(snapshot)
        self._send.send_nowait(snapshot)
        yield FakeGadget(snapshot)

    async def next(self) -> DeviceSnapshot:
        """Wait for the next gadget to be opened."""
        return await self._receive.receive()


async def _plug(remote: RemoteDevice, plug: Plug, log: Log) -> trio.Event:
    """``plug_and_bridge`` until the gadget is plugged, then cancelled; the ``plugged`` event."""
    plugged = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(plug_and_bridge, remote, plug, "1-2 on server", log, plugged)
        await plugged.wait()
        nursery.cancel_scope.cancel()
    return plugged


async def test_a_keyboard_without_a_rule_never_reaches_a_gadget() -> None:
    openings, log = Openings(), list[str]()
    plugged = trio.Event()
    plug = Plug(UDC, opener=openings)
    with trio.fail_after(10):
        async with bed(keyboard()) as test_bed, test_bed.imported("1-2") as remote:
            with pytest.raises(DeviceRefused) as info:
                await plug_and_bridge(remote, plug, "1-2 on server", log.append, plugged)
    assert info.value.one_line() == KEYBOARD_REFUSED
    assert openings.opened == []
    assert not plugged.is_set()
    assert log == []


@pytest.mark.parametrize(
    "policy",
    [DevicePolicy.of(classes=[parse_class_rule("03")]), DevicePolicy.of([(0x1234, 0xABCD)])],
    ids=["allow-class 03", "allow 1234:abcd"],
)
async def test_a_keyboard_a_rule_allows_is_plugged(policy: DevicePolicy) -> None:
    openings, log = Openings(), list[str]()
    with trio.fail_after(10):
        async with bed(keyboard()) as test_bed, test_bed.imported("1-2") as remote:
            await _plug(remote, Plug(UDC, gate=DeviceGate(policy), opener=openings), log.append)
    assert [(s.device.id_vendor, s.device.id_product) for s in openings.opened] == [
        (0x1234, 0xABCD)
    ]
    assert log[0] == f"plugged 1234:abcd (1-2 on server) into {UDC} (fake)"


async def test_the_pinning_hint_is_logged_once_per_run() -> None:
    openings, log = Openings(), list[str]()
    plug = Plug(UDC, gate=DeviceGate(pin=True), opener=openings)
    with trio.fail_after(10):
        async with bed(disk()) as test_bed:
            for _ in range(2):  # as attach --reconnect does: one Plug, two imports
                async with test_bed.imported("1-1") as remote:
                    await _plug(remote, plug, log.append)
                # The server releases the device once it has seen the connection closed.
                await test_bed.done["client"].wait()
    assert len(openings.opened) == 2
    hint = "admitted 0781:5567 with no --allow rule; --allow 0781:5567 pins this device"
    assert [line for line in log if line.startswith("admitted")] == [hint]
    assert log.index(hint) < log.index(f"plugged 0781:5567 (1-2 on server) into {UDC} (fake)")


def _swapped() -> FakeDevice:
    """Another device at bus ID 1-1 with the disk's VID:PID but another bcdDevice."""
    raw = bytearray(MASS_STORAGE_DEVICE)
    raw[12] = 0x99
    snapshot = DeviceSnapshot.from_raw("1-1", Speed.HIGH, bytes(raw), (MASS_STORAGE_CONFIG,))
    return FakeDevice(snapshot)


async def test_attach_reconnecting_refuses_a_swapped_device() -> None:
    first = disk("1-1")
    source = FakeSource([first])
    server = Server(source, Selection.of(busids=["1-1"]), options=FAST)
    openings, log = Openings(), list[str]()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            nursery.start_soon(trio.serve_listeners, server.handle_socket, listeners)
            port = listeners[0].socket.getsockname()[1]
            options = AttachOptions(
                "127.0.0.1", port, DeviceMatch(busid="1-1"), reconnect=True, timeout=5
            )
            plug = Plug(UDC, gate=DeviceGate(pin=True), opener=openings)
            run = Call(nursery, partial(attach_to, options, plug, log.append))
            await openings.next()
            # The disk is pulled out and another device is plugged in its place.
            first.unplug()
            source.devices_held.append(_swapped())
            with pytest.raises(DeviceRefused) as info:
                await run.result()
            nursery.cancel_scope.cancel()
    assert len(openings.opened) == 1
    assert info.value.one_line() == (
        "refused 0781:5567 (1-1 on 127.0.0.1): its descriptors differ from those of the device"
        " plugged before in this run (a swapped device is not the one approved)"
    )
    assert any("retrying in 1 s" in line for line in log)


def _opening_with(openings: Openings) -> BridgeFn:
    """``plug_and_bridge`` as ``listen`` runs it, with ``openings`` building the gadgets."""

    async def bridge(
        remote: RemoteDevice, plug: Plug, origin: str, log: Log, plugged: trio.Event
    ) -> None:
        await plug_and_bridge(
            remote, dataclasses.replace(plug, opener=openings), origin, log, plugged
        )

    return bridge


async def test_listen_drops_a_refused_offer_and_takes_the_next() -> None:
    openings, log = Openings(), list[str]()
    listener = Listener(ListenOptions(timeout=5), UDC, log.append, _opening_with(openings))
    with trio.fail_after(10):
        async with bed(keyboard(), disk()) as test_bed:
            gadget_end, device_end = trio.testing.memory_stream_pair()
            test_bed.nursery.start_soon(test_bed.server.export_to, device_end, "1-2", "gadget")
            await listener.handle(gadget_end)  # the keyboard: refused, the connection closed
            gadget_end, device_end = trio.testing.memory_stream_pair()
            test_bed.nursery.start_soon(test_bed.server.export_to, device_end, "1-1", "gadget")
            test_bed.nursery.start_soon(listener.handle, gadget_end)
            plugged = await openings.next()
            await trio.testing.wait_all_tasks_blocked()
            test_bed.nursery.cancel_scope.cancel()
    assert plugged.device.id_product == 0x5567
    assert [s.device.id_product for s in openings.opened] == [0x5567]
    refusals = [line for line in log if "refused" in line]
    assert refusals == [
        "peer: refused 1234:abcd (1-2 from peer): interface 0 is HID (03:01:01); only"
        " --allow 1234:abcd or --allow-class 03 plugs it"
    ]


async def test_attach_by_vid_pid_finds_the_device_again_under_a_new_busid() -> None:
    """The disk is pulled out of port 1-1 and plugged into 2-3: attach --device follows it."""
    first = disk("1-1")
    source = FakeSource([first])
    server = Server(source, Selection.of(ids=[(0x0781, 0x5567)]), options=FAST)
    openings, log = Openings(), list[str]()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            nursery.start_soon(trio.serve_listeners, server.handle_socket, listeners)
            port = listeners[0].socket.getsockname()[1]
            match = DeviceMatch(vid_pid=(0x0781, 0x5567))
            options = AttachOptions("127.0.0.1", port, match, reconnect=True, timeout=5)
            plug = Plug(UDC, gate=DeviceGate(pin=True), opener=openings)
            nursery.start_soon(attach_to, options, plug, log.append)
            await openings.next()
            first.unplug()
            source.devices_held.append(disk("2-3"))
            await openings.next()
            nursery.cancel_scope.cancel()
    plugged = [line for line in log if line.startswith("plugged")]
    assert plugged == [
        f"plugged 0781:5567 (1-1 on 127.0.0.1) into {UDC} (fake)",
        f"plugged 0781:5567 (2-3 on 127.0.0.1) into {UDC} (fake)",
    ]
