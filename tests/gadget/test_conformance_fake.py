"""The gadget-backend conformance checks against ``FakeGadget``, ``FakeHost`` being the host."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from tests.gadget.conformance import CHECKS, SNAPSHOT, Bed, Check, check_id, run_check
from usbip_gadget.testing import FakeGadget, HostTimeout
from usbip_gadget.usb import Request, RequestType, SetupPacket

CHECK_TIMEOUT = 10.0
HOST_ADDRESS = 7


class FakeBedHost:
    """``FakeHost`` as a conformance ``HostDriver``."""

    def __init__(self, gadget: FakeGadget) -> None:
        self._gadget = gadget
        self._host = gadget.host
        self._addresses = dict(gadget.host_remap.endpoints)

    async def plug(self) -> None:
        self._host.connect()
        set_address = SetupPacket(RequestType.OUT, Request.SET_ADDRESS, HOST_ADDRESS)
        await self._host.control(set_address)
        value = self._gadget.configuration.b_configuration_value
        await self._host.control(SetupPacket.set_configuration(value))

    async def unplug(self) -> None:
        await trio.lowlevel.checkpoint()
        self._host.disconnect()

    async def control_in(self, setup: SetupPacket) -> bytes:
        return await self._host.control(setup)

    async def control_out(self, setup: SetupPacket, data: bytes = b"") -> None:
        await self._host.control(setup, data)

    async def transfer_in(self, address: int, length: int, *, timeout: float) -> bytes:
        with trio.move_on_after(timeout):
            return await self._host.transfer_in(self._local(address), length)
        raise HostTimeout(f"IN 0x{address:02x}: nothing within {timeout} s")

    async def transfer_out(self, address: int, data: bytes, *, timeout: float) -> None:
        with trio.move_on_after(timeout):
            await self._host.transfer_out(self._local(address), data)
            return
        raise HostTimeout(f"OUT 0x{address:02x}: not taken within {timeout} s")

    async def clear_halt(self, address: int) -> None:
        await self._host.control(SetupPacket.clear_feature_halt(self._local(address)))

    async def settle(self) -> None:
        await trio.testing.wait_all_tasks_blocked()

    def _local(self, address: int) -> int:
        return self._addresses.get(address, address)


@asynccontextmanager
async def fake_bed() -> AsyncIterator[Bed]:
    gadget = FakeGadget(SNAPSHOT)
    await trio.lowlevel.checkpoint()
    yield Bed(gadget, FakeBedHost(gadget))


@pytest.mark.parametrize("check", CHECKS, ids=check_id)
async def test_fake_gadget_conforms(check: Check) -> None:
    await run_check(check, fake_bed, CHECK_TIMEOUT)
