"""Target 4b: the bridge's ep0 handling against a hostile PC and a hostile device.

Each case is one session, run as ``tests/bridge/test_bridge.py`` runs the bridge: a real
``Bridge`` between ``FakeGadget`` (the PC's side, driven through ``FakeHost``) and a
``FakeRemote`` served over USB/IP on in-memory streams, on trio's mock clock. The PC sends
random SETUPs — standard, class, vendor and reserved, to every recipient, any wLength,
with their OUT data stages — now and then overlapping, unplugging, suspending or
configuring; the device answers each forwarded request with data of any length, an
empty answer, a stall, an error status, or late, or never. Checked:

- every request the bridge sees is answered (data, acknowledgement or stall) before the
  PC's own 5 s control timeout, unless the PC itself overlapped requests;
- the bridge never replies with more than the request's wLength, never asks the device for
  more than the PC asked, and forwards OUT data of exactly wLength bytes;
- nothing but the ``UsbipGadgetError`` family escapes, and the session ends within its
  deadline (mock clock) — else a hang.
"""

from __future__ import annotations

import errno
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import trio
import trio.testing
from tools.fuzz import _descriptors as d
from tools.fuzz._harness import Hang, Invariant, Target
from tools.fuzz._mutate import edge_u16

from usbip_gadget import UsbipGadgetError
from usbip_gadget._groups import collapse_single
from usbip_gadget.bridge import CONTROL_TIMEOUT, Bridge
from usbip_gadget.client import open_remote_device
from usbip_gadget.protocol import Direction, RetSubmit
from usbip_gadget.testing import FakeGadget, FakeRemote, HostError, HostTimeout, Reply
from usbip_gadget.usb import DeviceSnapshot, SetupPacket, Speed

_SETTLE = CONTROL_TIMEOUT + 2.0  # virtual seconds after which the bridge has let go of a request
_STEPS = (1, 3, 8, 16)
_LATE = (0.0, 0.01, 1.0, 3.9, 4.1, 10.0)
_ERROR_STATUSES = (-errno.EPROTO, -errno.ENODEV, -errno.EOVERFLOW, -errno.ESHUTDOWN, -5)


class CheckedGadget(FakeGadget):
    """``FakeGadget`` that notes replies longer than the request they answer."""

    def __init__(self, snapshot: DeviceSnapshot) -> None:
        super().__init__(snapshot)
        self.violations: list[str] = []

    async def reply(self, data: bytes) -> None:
        pending = self._pending
        if pending is not None and len(data) > pending.setup.w_length:
            self.violations.append(f"replied {len(data)} bytes to {pending.setup}")
        await super().reply(data)


@cache
def _snapshots() -> tuple[DeviceSnapshot, ...]:
    """Devices FunctionFS (so FakeGadget) can express: the vectors and made-up ones."""
    made = random.Random("bridge-ep0 snapshots")
    raws = [
        (d.DEVICES[2], d.CONFIGS[-1]),
        (d.DEVICES[0], d.MASS_STORAGE_CONFIG),
        (d.DEVICES[1], d.CONFIGS[1]),
        *((made.choice(d.DEVICES), d.structural_config(made)) for _ in range(200)),
    ]
    found = []
    for device, config in raws:
        try:
            snapshot = DeviceSnapshot.from_raw("1-1", made.choice((Speed.FULL, Speed.HIGH)),
                                               device[:17] + b"\x01", (config,))  # fmt: skip
            CheckedGadget(snapshot)
            FakeRemote(snapshot)
        except (UsbipGadgetError, ValueError):
            continue
        found.append(snapshot)
    return tuple(found)


@dataclass
class Device:
    """The remote device's answers to what the bridge forwards."""

    rng: random.Random
    remote: FakeRemote
    late: deque[tuple[float, bytes | Reply | int | None]] = field(default_factory=deque)

    def answer(self, setup: SetupPacket, _data: bytes) -> bytes | Reply:
        rng = self.rng
        roll = rng.random()
        data = rng.randbytes(rng.choice((0, 1, 2, setup.w_length, setup.w_length + 64, 300)))
        if roll < 0.55:
            return data
        if roll < 0.75:
            return Reply.STALL
        final = rng.choice((data, Reply.STALL, rng.choice(_ERROR_STATUSES), None))
        self.late.append((rng.choice(_LATE), final))  # None: never answered
        return Reply.HOLD

    async def answer_late(self) -> None:
        """Answer held requests after their delay (or never)."""
        handled: set[int] = set()
        async with trio.open_nursery() as nursery:
            while True:
                await self.remote.wait_until(
                    lambda: any(s not in handled for s in self.remote.held_controls)
                )
                seqnum = next(s for s in self.remote.held_controls if s not in handled)
                handled.add(seqnum)
                delay, final = self.late.popleft()
                if final is not None:
                    nursery.start_soon(self._later, seqnum, delay, final)

    async def _later(self, seqnum: int, delay: float, final: bytes | Reply | int) -> None:
        await trio.sleep(delay)
        if seqnum not in self.remote.held_controls:
            return  # the bridge unlinked it
        if isinstance(final, int):
            cmd = self.remote.held_controls.pop(seqnum)
            some = self.rng.randrange(cmd.transfer_buffer_length + 1)
            some = some if cmd.direction == Direction.IN else 0
            self.remote.complete_raw(seqnum, RetSubmit(seqnum, final, some, bytes(some)))
        else:
            self.remote.answer_control(seqnum, final)


class Session:
    """The PC's side of one session."""

    def __init__(self, rng: random.Random, gadget: CheckedGadget, remote: FakeRemote) -> None:
        self.rng = rng
        self.ended = trio.Event()  # the bridge has ended (on an allowed error)
        self.gadget = gadget
        self.host = gadget.host
        self.remote = remote
        config = gadget.configuration
        self.interfaces = [*range(config.b_num_interfaces), rng.randrange(256)]
        self.endpoints = [ep.b_endpoint_address for ep in config.endpoints()] + [0, 0x8F]

    def setup(self) -> SetupPacket:
        rng = self.rng
        if rng.random() < 0.1:
            return SetupPacket.parse(rng.randbytes(8))
        direction = rng.choice((0x80, 0x00))
        kind = rng.choice((0x00, 0x20, 0x20, 0x40, 0x40, 0x60))
        recipient = rng.choice((0, 1, 1, 2, 3))
        index = {1: rng.choice(self.interfaces), 2: rng.choice(self.endpoints)}.get(
            recipient, rng.randrange(1 << 16)
        )
        request = rng.choice((0, 1, 6, 0x20, 0x21, 0x22, 0xFE, 0xFF, rng.randrange(256)))
        lengths = (0, 1, 7, 64, 255, 256, 4096, edge_u16(rng)) if direction else (0, 1, 7, 64, 512)
        return SetupPacket(direction | kind | recipient, request, rng.randrange(1 << 16), index,
                           rng.choice(lengths))  # fmt: skip

    async def control(self, setup: SetupPacket, *, overlapped: bool) -> None:
        data = self.rng.randbytes(setup.w_length) if not setup.is_in else b""
        seen = len(self.remote.controls)
        try:
            got = await self.host.control(setup, data)
        except HostTimeout:
            if not overlapped and not self.ended.is_set():
                raise Invariant(f"the bridge left {setup} unanswered") from None
            return
        except HostError:
            return
        if len(got) > setup.w_length or (got and not setup.is_in):
            raise Invariant(f"the PC got {len(got)} bytes for {setup}")
        if not overlapped:  # else the other request's may look the same to the device
            self._check_forwarded(setup, seen)

    def _check_forwarded(self, setup: SetupPacket, seen: int) -> None:
        for sent, data in self.remote.controls[seen:]:
            if (sent.bm_request_type, sent.b_request) != (setup.bm_request_type, setup.b_request):
                continue
            if sent.w_length > setup.w_length or (not sent.is_in and len(data) != sent.w_length):
                raise Invariant(f"the device was asked {sent} with {len(data)} bytes for {setup}")

    async def step(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.7:
            setup = self.setup()
            await self.control(setup, overlapped=False)
            if not setup.is_in:  # its OUT data is forwarded after the PC has its answer
                await trio.sleep(_SETTLE)
        elif roll < 0.8:
            await self.overlap()
        elif roll < 0.9:
            value = rng.choice((self.gadget.configuration.b_configuration_value, 0))
            await self.control(SetupPacket.set_configuration(value), overlapped=False)
        else:
            await self.lifecycle()

    async def overlap(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._quietly, self.setup())
            await trio.sleep(self.rng.choice((0, 0.001, 1.0, 4.5)))
            await self.control(self.setup(), overlapped=True)
        await trio.sleep(_SETTLE)

    async def _quietly(self, setup: SetupPacket) -> None:
        await self.control(setup, overlapped=True)

    async def lifecycle(self) -> None:
        actions: list[Callable[[], object]] = [self.host.suspend, self.host.resume]
        actions += [self.host.disconnect, self.host.unbind]
        self.rng.choice(actions)()
        await trio.sleep(self.rng.choice((0, 0.5)))
        if not self.host.attached:
            self.host.connect()
        await trio.sleep(_SETTLE)


async def _serve(rng: random.Random, snapshot: DeviceSnapshot) -> CheckedGadget:
    remote = FakeRemote(snapshot)
    device = Device(rng, remote)
    remote.on_control = device.answer
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(remote.serve, server)
        nursery.start_soon(device.answer_late)
        async with open_remote_device(client, remote.busid) as remote_device:
            gadget = CheckedGadget(snapshot)
            bridge = Bridge(remote_device, gadget, gadget.configuration, depth=rng.choice((1, 4)))
            await _session(rng, bridge, Session(rng, gadget, remote))
        nursery.cancel_scope.cancel()
    return gadget


async def _session(rng: random.Random, bridge: Bridge, session: Session) -> None:
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            try:
                await bridge.run()
            except UsbipGadgetError:
                session.ended.set()  # the session is over (the device side went away, say)

        nursery.start_soon(run)
        session.host.connect()
        for _ in range(rng.choice(_STEPS)):
            if session.ended.is_set():
                break
            if rng.random() < 0.02:
                await session.remote.close()  # the server goes away: the bridge must end
                await session.ended.wait()
                break
            await session.step()
        nursery.cancel_scope.cancel()


async def _case(rng: random.Random) -> CheckedGadget | None:
    snapshot = rng.choice(_snapshots())
    with trio.move_on_after(max(_STEPS) * 3 * (_SETTLE + 6) + 60):
        with collapse_single():
            return await _serve(rng, snapshot)
    return None


def bridge_case(rng: random.Random) -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)
    gadget = trio.run(_case, rng, clock=clock)
    if gadget is None:
        raise Hang("the session did not end within its deadline (mock clock)")
    if gadget.violations:
        raise Invariant(gadget.violations[0])


TARGETS = [Target("bridge-ep0", bridge_case, (UsbipGadgetError,), 0.005, budget=30.0)]
