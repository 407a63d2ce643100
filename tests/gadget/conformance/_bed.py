"""The bed the checks run on: a plugged backend, the host in front of it, the ep0 loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

import trio

from usbip_gadget.gadget import Ep0Event, Ep0EventType, GadgetBackend
from usbip_gadget.usb import DeviceSnapshot, RequestType, SetupPacket, Speed

BIND, ENABLE, DISABLE, SETUP = (
    Ep0EventType.BIND,
    Ep0EventType.ENABLE,
    Ep0EventType.DISABLE,
    Ep0EventType.SETUP,
)

# A high-speed vendor device without strings (GadgetFS would pass string requests to ep0):
# one interface with bulk and interrupt endpoints both ways, at addresses dummy_hcd offers.
DEVICE = bytes.fromhex("12010002000000406b1d0901000100000001")  # 1d6b:0109, bcdUSB 2.00
CONFIG = bytes.fromhex(
    "09022e000101008032"  # one interface, bConfigurationValue 1
    "0904000004ff000000"  # interface 0: vendor class, four endpoints
    "07058102000200"  # bulk IN 0x81, 512 bytes
    "07050202000200"  # bulk OUT 0x02, 512 bytes
    "07058503400004"  # interrupt IN 0x85, 64 bytes
    "07050403400004"  # interrupt OUT 0x04, 64 bytes
)
SNAPSHOT = DeviceSnapshot.from_raw("1-1", Speed.HIGH, DEVICE, (CONFIG,))
BULK_IN, BULK_OUT, INTERRUPT_IN, INTERRUPT_OUT = 0x81, 0x02, 0x85, 0x04
ADDRESSES = (BULK_IN, BULK_OUT, INTERRUPT_IN, INTERRUPT_OUT)

VENDOR_IN = RequestType.IN | RequestType.VENDOR | RequestType.INTERFACE
VENDOR_OUT = RequestType.OUT | RequestType.VENDOR | RequestType.INTERFACE
TRANSFER_TIMEOUT = 5.0
ENABLE_TIMEOUT = 20.0  # from the host's configuration to the backend's ENABLE


class HostDriver(Protocol):
    """The host side of a bed.

    Endpoints are named by the remote's addresses (a backend endpoint's ``descriptor``); the
    driver maps them to the addresses its host sees. Failures raise ``HostError`` and its
    kinds: ``HostStall`` for a stall, ``HostTimeout`` once ``timeout`` seconds have passed.
    """

    async def plug(self) -> None:
        """Return once the host has enumerated and configured the gadget (again)."""
        ...

    async def unplug(self) -> None:
        """Disconnect from the bus and return once the host has seen the device go."""
        ...

    async def control_in(self, setup: SetupPacket) -> bytes: ...

    async def control_out(self, setup: SetupPacket, data: bytes = b"") -> None: ...

    async def transfer_in(self, address: int, length: int, *, timeout: float) -> bytes:
        """One bulk or interrupt IN transfer (by the endpoint's type) of up to ``length``."""
        ...

    async def transfer_out(self, address: int, data: bytes, *, timeout: float) -> None:
        """One bulk or interrupt OUT transfer; ``b""`` is a zero-length packet."""
        ...

    async def clear_halt(self, address: int) -> None:
        """CLEAR_FEATURE(ENDPOINT_HALT) on the endpoint."""
        ...

    async def settle(self) -> None:
        """Return once I/O the gadget side has just started has reached the controller."""
        ...


@dataclass
class Bed:
    """A plugged backend replaying ``SNAPSHOT``, and the host in front of it."""

    backend: GadgetBackend
    host: HostDriver


OpenBed = Callable[[], AbstractAsyncContextManager[Bed]]
Answer = Callable[[GadgetBackend, SetupPacket], Awaitable[None]]


async def stall(backend: GadgetBackend, setup: SetupPacket) -> None:
    await backend.stall()


class Ep0:
    """The bridge's ep0 loop, reduced: ``events`` as read, SETUPs answered with ``answer``
    (given in the remote's numbering, as the bridge forwards them) and kept in ``setups``."""

    def __init__(self, backend: GadgetBackend) -> None:
        self.backend = backend
        self.events: list[Ep0Event] = []
        self.setups: list[SetupPacket] = []
        self.answer: Answer = stall
        self._changed = trio.lowlevel.ParkingLot()

    async def run(self) -> None:
        while True:
            for event in await self.backend.events():
                self.events.append(event)
                if event.type == SETUP:
                    assert event.setup is not None
                    setup = self.backend.ep0_remap.setup_to_remote(event.setup)
                    self.setups.append(setup)
                    await self.answer(self.backend, setup)
                self._changed.unpark_all()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds; checked after every event and answer."""
        while not condition():
            await self._changed.park()

    async def wait_for(self, kind: Ep0EventType, after: int = 0) -> int:
        """The index of the first ``kind`` event at or after ``after``, once there is one."""
        await self.wait_until(lambda: kind in self.kinds()[after:])
        return self.kinds().index(kind, after)

    def kinds(self) -> list[Ep0EventType]:
        return [event.type for event in self.events]


Check = Callable[[Bed, Ep0], Awaitable[None]]


async def run_check(check: Check, open_bed: OpenBed, timeout: float) -> None:
    """Plug a fresh bed, configure it from the host, run ``check``, unplug."""
    with trio.fail_after(timeout):
        async with open_bed() as bed, trio.open_nursery() as nursery:
            ep0 = Ep0(bed.backend)
            nursery.start_soon(ep0.run)
            await bed.host.plug()
            with trio.move_on_after(ENABLE_TIMEOUT) as waiting:
                await ep0.wait_for(ENABLE)
            if waiting.cancelled_caught:
                kinds = ", ".join(kind.name for kind in ep0.kinds()) or "none"
                raise AssertionError(f"configured by the host, yet no ENABLE (events: {kinds})")
            await check(bed, ep0)
            nursery.cancel_scope.cancel()
