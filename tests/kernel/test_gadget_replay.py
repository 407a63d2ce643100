"""The gadget layer on a real kernel: a device read through usbipd is rebuilt as a configfs +
FunctionFS gadget on the second controller, and the host enumerates the same descriptors."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.usb.vectors import MASS_STORAGE_DEVICE
from usbip_gadget import EndpointsExhausted
from usbip_gadget.client import describe
from usbip_gadget.gadget import ConfigfsGadget, string_indexes
from usbip_gadget.gadget.functionfs import (
    CALLER_FLAGS,
    build_descriptors,
    build_strings,
    check_expressible,
    open_functionfs_gadget,
)
from usbip_gadget.protocol import DEFAULT_PORT
from usbip_gadget.usb import DeviceDescriptor, DeviceSnapshot, Speed, parse_configuration

from . import _gadget, _sysfs, _usbip

pytestmark = pytest.mark.kernel

REPLAY_UDC = "dummy_udc.1"
ENUMERATION_TIMEOUT_S = 30.0


@contextlib.contextmanager
def functionfs(instance: str, mountpoint: Path) -> Iterator[Path]:
    mountpoint.mkdir(parents=True, exist_ok=True)
    _usbip.run(["mount", "-t", "functionfs", instance, str(mountpoint)])
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False, timeout=30)


def _snapshot_of_source(usbipd: str, image: Path) -> DeviceSnapshot:
    with _gadget.storage_gadget(image) as disk, _usbip.exported(disk.busid) as busid:
        return trio.run(functools.partial(describe, usbipd, DEFAULT_PORT, busid, timeout=60))


@pytest.mark.timeout(300)
def test_functionfs_gadget_replays_a_storage_device(
    usbipd: str, backing_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    image, _ = backing_file
    snapshot = _snapshot_of_source(usbipd, image)
    config = snapshot.configurations[0]
    assert check_expressible(config) == ()
    strings, _index_map = build_strings(snapshot.strings, string_indexes(config))
    with ConfigfsGadget(snapshot, name="replay") as gadget:
        gadget.add_function("ffs", "replay", config.b_configuration_value)
        with functionfs("replay", tmp_path / "ffs") as mount:
            ep0 = os.open(mount / "ep0", os.O_RDWR)
            try:
                os.write(ep0, build_descriptors(config, speed=snapshot.speed, flags=CALLER_FLAGS))
                os.write(ep0, strings)
                gadget.bind(REPLAY_UDC)
                device = _sysfs.wait_for(
                    lambda: _sysfs.configured_device(
                        _sysfs.udc_host_buses(REPLAY_UDC),
                        snapshot.device.id_vendor,
                        snapshot.device.id_product,
                    ),
                    ENUMERATION_TIMEOUT_S,
                    "the replayed gadget configured on bus 2",
                )
                seen = _sysfs.descriptors(device)
                product = _sysfs.read_text(device / "product")
            finally:
                gadget.unbind()
                os.close(ep0)
    # Device level: what configfs was given is what the host reads.
    local, remote = DeviceDescriptor.parse(seen[:18]), snapshot.device
    for field in ("bcd_usb", "b_device_class", "b_device_sub_class", "b_device_protocol",
                  "b_max_packet_size0", "id_vendor", "id_product", "bcd_device"):  # fmt: skip
        assert getattr(local, field) == getattr(remote, field), field
    assert product == snapshot.string(remote.i_product)
    # Interface and endpoints: FunctionFS reproduced them, addresses included.
    replayed = parse_configuration(seen[18:], lenient=True)
    assert replayed.b_configuration_value == config.b_configuration_value
    assert [(a.b_interface_class, a.b_interface_sub_class, a.b_interface_protocol)
            for a in replayed.alt_settings] == [
        (a.b_interface_class, a.b_interface_sub_class, a.b_interface_protocol)
        for a in config.alt_settings
    ]  # fmt: skip
    assert [
        (e.b_endpoint_address, e.bm_attributes, e.w_max_packet_size) for e in replayed.endpoints()
    ] == [(e.b_endpoint_address, e.bm_attributes, e.w_max_packet_size) for e in config.endpoints()]
    assert not list((Path("/sys/kernel/config/usb_gadget")).glob("replay"))


def _bulk_config(ins: int, outs: int) -> bytes:
    """One vendor-class interface with ``ins`` bulk IN and ``outs`` bulk OUT endpoints."""
    endpoints = b"".join(bytes([7, 5, 0x80 | n, 2, 0x00, 0x02, 0]) for n in range(1, ins + 1))
    endpoints += b"".join(bytes([7, 5, n, 2, 0x00, 0x02, 0]) for n in range(1, outs + 1))
    interface = bytes([9, 4, 0, 0, ins + outs, 0xFF, 0, 0, 0])
    total = 9 + len(interface) + len(endpoints)
    return bytes([9, 2, total & 0xFF, total >> 8, 1, 1, 0, 0x80, 50]) + interface + endpoints


@pytest.mark.timeout(120)
def test_a_controller_short_of_endpoints_refuses_in_one_line() -> None:
    """dummy_udc has far fewer than 15 bulk IN endpoints; the bind fails and says why."""
    config = _bulk_config(15, 5)
    snapshot = DeviceSnapshot.from_raw("1-1", Speed.HIGH, MASS_STORAGE_DEVICE, (config,))
    assert check_expressible(snapshot.configurations[0]) == ()

    async def plug() -> None:
        async with open_functionfs_gadget(snapshot, udc=REPLAY_UDC, name="many"):
            pytest.fail("the controller bound a gadget with 20 endpoints")

    with pytest.raises(EndpointsExhausted) as info:
        trio.run(plug)
    assert info.value.one_line() == (
        f"{REPLAY_UDC} cannot give this device its 20 endpoints (15 bulk IN, 5 bulk OUT)"
        " (a controller with more endpoints, or a device with fewer)"
    )
