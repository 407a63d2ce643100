"""Finding an exported device by what it is: VID:PID, serial number, product string."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from tests.server.harness import FAST, keyboard
from tests.usb.vectors import MASS_STORAGE_CONFIG, MASS_STORAGE_DEVICE
from usbip_gadget.client import (
    AmbiguousMatch,
    DeviceMatch,
    NoMatchingDevice,
    open_matching_device,
    open_remote_device,
)
from usbip_gadget.protocol import ExportedDevice
from usbip_gadget.server import Selection, Server
from usbip_gadget.testing import FakeDevice, FakeSource
from usbip_gadget.usb import DeviceSnapshot, Speed

pytestmark = pytest.mark.timeout(30)

DISK = (0x0781, 0x5567)


def _disk(busid: str, serial: str | None, product: str = "Disk") -> FakeDevice:
    """A disk; with no serial, its descriptor still names string 3, which stalls."""
    strings = {0x0409: {1: "Acme", 2: product, **({3: serial} if serial else {})}}
    snapshot = DeviceSnapshot.from_raw(
        busid, Speed.HIGH, MASS_STORAGE_DEVICE, (MASS_STORAGE_CONFIG,),
        lang_ids=(0x0409,), strings=strings,
    )  # fmt: skip
    return FakeDevice(snapshot)


@asynccontextmanager
async def _serving(*devices: FakeDevice) -> AsyncIterator[tuple[int, list[str]]]:
    """A server on a loopback port exporting ``devices``: (its port, its log)."""
    log: list[str] = []
    busids = Selection.of(busids=[d.busid for d in devices])
    server = Server(FakeSource(devices), busids, options=FAST, log=log.append)
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        nursery.start_soon(trio.serve_listeners, server.handle_socket, listeners)
        yield listeners[0].socket.getsockname()[1], log
        nursery.cancel_scope.cancel()


async def _found(port: int, match: DeviceMatch) -> tuple[str, int]:
    """(bus ID, idProduct of the imported device) for ``match``."""
    async with open_matching_device("127.0.0.1", port, match, timeout=5) as (busid, remote):
        return busid, remote.device.id_product


async def test_a_vid_pid_finds_the_one_device_with_it() -> None:
    with trio.fail_after(10):
        async with _serving(keyboard("1-1"), _disk("3-4", "A1")) as (port, _log):
            assert await _found(port, DeviceMatch(vid_pid=DISK)) == ("3-4", 0x5567)


async def test_like_devices_are_told_apart_by_serial_or_product() -> None:
    devices = _disk("1-1", "A1", "Left"), _disk("1-2", "B2", "Right")
    with trio.fail_after(10):
        async with _serving(*devices) as (port, _log):
            with pytest.raises(AmbiguousMatch) as info:
                await _found(port, DeviceMatch(vid_pid=DISK))
            assert await _found(port, DeviceMatch(vid_pid=DISK, serial="B2")) == ("1-2", 0x5567)
            right = DeviceMatch(vid_pid=DISK, product="Right")
            assert await _found(port, right) == ("1-2", 0x5567)
            assert await _found(port, DeviceMatch(vid_pid=DISK, serial="A1")) == ("1-1", 0x5567)
    assert info.value.one_line() == (
        "2 devices 0781:5567 on 127.0.0.1:"
        f"{port} (1-1, 1-2) (tell them apart with a serial number or product string, or a bus ID)"
    )


async def test_no_match_names_what_the_server_has() -> None:
    with trio.fail_after(10):
        async with _serving(keyboard("1-1"), _disk("1-2", "A1")) as (port, _log):
            with pytest.raises(NoMatchingDevice) as absent:
                await _found(port, DeviceMatch(vid_pid=(0x04A9, 0x1909)))
            with pytest.raises(NoMatchingDevice) as other_serial:
                await _found(port, DeviceMatch(vid_pid=DISK, serial="Z9"))
    assert str(absent.value) == (
        f"no device 04a9:1909 on 127.0.0.1:{port} (exported: 1-1 1234:abcd, 1-2 0781:5567)"
    )
    assert str(other_serial.value) == (
        f"no device 0781:5567 serial 'Z9' on 127.0.0.1:{port} (1-2: serial 'A1' product 'Disk')"
    )


async def test_a_busy_candidate_is_passed_over_for_the_next() -> None:
    devices = _disk("1-1", "A1"), _disk("1-2", "A1")  # the same serial: the first free one
    with trio.fail_after(10):
        async with _serving(*devices) as (port, _log):
            held = await trio.open_tcp_stream("127.0.0.1", port)
            async with held, open_remote_device(held, "1-1", timeout=5):
                match = DeviceMatch(vid_pid=DISK, serial="A1")
                assert await _found(port, match) == ("1-2", 0x5567)


async def test_the_strings_probe_keeps_the_matching_import() -> None:
    """The device that matched is the one yielded: one import, no release and re-import."""
    with trio.fail_after(10):
        async with _serving(_disk("1-1", "A1")) as (port, log):
            assert await _found(port, DeviceMatch(vid_pid=DISK, serial="A1")) == ("1-1", 0x5567)
    assert len([line for line in log if "imported" in line]) == 1, log


async def test_a_candidate_whose_strings_fail_is_passed_over() -> None:
    devices = _disk("1-1", None), _disk("1-2", "B2")
    with trio.fail_after(10):
        async with _serving(*devices) as (port, _log):
            assert await _found(port, DeviceMatch(vid_pid=DISK, serial="B2")) == ("1-2", 0x5567)
            with pytest.raises(NoMatchingDevice) as info:
                await _found(port, DeviceMatch(vid_pid=DISK, serial="Z9"))
    assert "1-1: serial None product 'Disk'" in str(info.value)
    assert "1-2: serial 'B2' product 'Disk'" in str(info.value)


async def test_a_stalled_serial_leaves_the_product_to_match() -> None:
    with trio.fail_after(10):
        async with _serving(_disk("1-1", None, "Left")) as (port, _log):
            match = DeviceMatch(vid_pid=DISK, product="Left")
            assert await _found(port, match) == ("1-1", 0x5567)


def test_a_match_is_a_busid_or_a_vid_pid() -> None:
    with pytest.raises(ValueError, match="bus ID or a VID:PID"):
        DeviceMatch()
    with pytest.raises(ValueError, match="matched alone"):
        DeviceMatch(busid="1-1", serial="A1")
    assert str(DeviceMatch(vid_pid=DISK, serial="A1", product="P")) == (
        "0781:5567 serial 'A1' product 'P'"
    )


class _Swapping(FakeSource):
    """Lists a disk at 1-1, but another device is at 1-1 by the time it is imported."""

    def __init__(self) -> None:
        super().__init__([keyboard("1-1")])
        self.listed = [_disk("1-1", "A1").exported()]

    def devices(self) -> list[ExportedDevice]:
        listed, self.listed = self.listed, []  # the first list only
        return listed or super().devices()


async def test_a_device_swapped_between_list_and_import_is_not_taken() -> None:
    server = Server(_Swapping(), Selection.of(busids=["1-1"]), options=FAST)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            nursery.start_soon(trio.serve_listeners, server.handle_socket, listeners)
            port = listeners[0].socket.getsockname()[1]
            with pytest.raises(NoMatchingDevice) as info:
                await _found(port, DeviceMatch(vid_pid=DISK))
            nursery.cancel_scope.cancel()
    assert str(info.value) == f"1-1 on 127.0.0.1:{port} is 1234:abcd now, not 0781:5567"
