"""The gadget-backend conformance checks against the kernel backends on dummy_hcd.

Each check plugs ``SNAPSHOT`` with the FunctionFS or the GadgetFS backend into dummy_udc.1 in
this process; the host is Linux's own on the UDC's bus, driven through usbfs (``_usbfs``).
GadgetFS binds the first free controller, so dummy_udc.0 carries a keyboard gadget meanwhile.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import pytest
import trio

from tests.gadget.conformance import CHECKS, SNAPSHOT, Bed, Check, check_id, run_check
from usbip_gadget.gadget import GadgetBackend
from usbip_gadget.gadget._kernel import MOUNT_ROOT
from usbip_gadget.gadget.functionfs import open_functionfs_gadget
from usbip_gadget.gadget.gadgetfs import open_gadgetfs_gadget, same_endpoint_addresses
from usbip_gadget.gadget.gadgetfs._ep0 import GadgetFsEp0
from usbip_gadget.gadget.gadgetfs._gadget import claim_ep0
from usbip_gadget.gadget.gadgetfs._layout import gadgetfs_layout
from usbip_gadget.gadget.gadgetfs._plug import _ep0_name, _mounted

from . import _gadget, _sysfs, _usbfs

pytestmark = pytest.mark.kernel

UDC = "dummy_udc.1"
CHECK_TIMEOUT_S = 150.0
GONE_TIMEOUT_S = 30.0


@contextlib.asynccontextmanager
async def _bed(
    plugged: contextlib.AbstractAsyncContextManager[GadgetBackend],
) -> AsyncIterator[Bed]:
    """The backend ``plugged`` gives, the usbfs host in front of it; on exit, unplugged and
    gone from the host's bus (the host notices an unbind asynchronously)."""
    host = _usbfs.UsbfsHost(UDC, SNAPSHOT)
    async with plugged as backend:
        try:
            yield Bed(backend, host)
        finally:
            host.close()
    buses = _sysfs.udc_host_buses(UDC)
    vid, pid = SNAPSHOT.device.id_vendor, SNAPSHOT.device.id_product
    await trio.to_thread.run_sync(
        lambda: _sysfs.wait_until(
            lambda: not _sysfs.find_devices(buses, vid, pid),
            GONE_TIMEOUT_S,
            f"{vid:04x}:{pid:04x} gone from bus {sorted(buses)}",
        )
    )


@contextlib.asynccontextmanager
async def functionfs_bed() -> AsyncIterator[Bed]:
    async with _bed(open_functionfs_gadget(SNAPSHOT, udc=UDC, name="conformance")) as bed:
        yield bed


@contextlib.asynccontextmanager
async def gadgetfs_bed() -> AsyncIterator[Bed]:
    # Entering and leaving the keyboard block while nothing else runs in this process.
    with _gadget.keyboard_gadget(_gadget.SOURCE_UDC):
        async with _bed(open_gadgetfs_gadget(SNAPSHOT, udc=UDC)) as bed:
            yield bed


@pytest.mark.timeout(CHECK_TIMEOUT_S + 30)
@pytest.mark.parametrize("check", CHECKS, ids=check_id)
async def test_functionfs_conforms(check: Check) -> None:
    await run_check(check, functionfs_bed, CHECK_TIMEOUT_S)


@pytest.mark.timeout(CHECK_TIMEOUT_S + 60)
@pytest.mark.parametrize("check", CHECKS, ids=check_id)
async def test_gadgetfs_conforms(check: Check) -> None:
    await run_check(check, gadgetfs_bed, CHECK_TIMEOUT_S)


@pytest.mark.timeout(120)
def test_a_host_enumerating_before_ep0_is_read_shows_in_the_first_read() -> None:
    """What ``plug_in`` relies on: if the host has enumerated and configured the gadget before
    ep0's first read (GadgetFS answered alone), that read gives CONNECT."""
    config = SNAPSHOT.configurations[0]
    buses = _sysfs.udc_host_buses(UDC)
    vid, pid = SNAPSHOT.device.id_vendor, SNAPSHOT.device.id_product
    with _gadget.keyboard_gadget(_gadget.SOURCE_UDC), _mounted(MOUNT_ROOT) as mount:
        ep0_path = mount / _ep0_name(mount)
        ep0 = os.open(ep0_path, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.write(ep0, gadgetfs_layout(SNAPSHOT, same_endpoint_addresses(config)).blob())
            os.set_blocking(ep0, False)
            _sysfs.wait_for(
                lambda: _sysfs.configured_device(buses, vid, pid),
                GONE_TIMEOUT_S,
                f"{vid:04x}:{pid:04x} configured by GadgetFS alone",
            )
            assert claim_ep0(ep0, GadgetFsEp0(config, str(ep0_path)))
        finally:
            os.close(ep0)
        _sysfs.wait_until(
            lambda: not _sysfs.find_devices(buses, vid, pid), GONE_TIMEOUT_S, "the gadget gone"
        )
