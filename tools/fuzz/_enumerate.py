"""Target 2: enumeration (``client.enumerate_device``) against a hostile device.

The device has hostile descriptors (``_descriptors``) and, per case, a hostility: each
request is answered honestly or, at that rate, with a truncated, mutated, random, empty or
oversized answer, a stall, another transfer error, or silence; a few answers come late.
Most cases run in memory: a remote whose ``control`` answers as ``RemoteDevice.control``
would (never more than wLength bytes; silence ends in ``UsbipTimeout`` after the timeout);
some run the real client over in-memory streams against a ``FakeRemote`` (silence there is
a held request the client unlinks). What ``describe`` and ``plan`` then do with the snapshot
(its JSON, its text tree, ``plan_backend``, ``describe_plans``) runs too. Each case runs on
trio's mock clock, which jumps while every task waits: a case still running after
``DEADLINE`` virtual seconds is a hang. Only the ``UsbipGadgetError`` family may escape.
"""

from __future__ import annotations

import contextlib
import errno
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import trio
import trio.testing
from tools.fuzz import _descriptors as d
from tools.fuzz._harness import Hang, Invariant, Target
from tools.fuzz._mutate import mutate

from usbip_gadget import DeviceGone, Overflow, Stall, TransferError, UsbipGadgetError, UsbipTimeout
from usbip_gadget._groups import collapse_single
from usbip_gadget.bridge import describe_plans
from usbip_gadget.client import RemoteDevice, enumerate_device, open_remote_device
from usbip_gadget.gadget import plan_backend
from usbip_gadget.protocol import UsbDevice
from usbip_gadget.testing import FakeRemote, Reply
from usbip_gadget.usb import (
    DescriptorType,
    DeviceSnapshot,
    Request,
    SetupPacket,
    Speed,
    render_tree,
)

TIMEOUT = 5.0  # enumerate_device's per-request timeout, as ``describe`` passes it
DEADLINE = 120.0  # virtual seconds: at most three late answers of at most TIMEOUT each
_LATE = (0.5, 2.0, 4.9, 5.1, 60.0)
_ERRORS: tuple[Callable[[], TransferError], ...] = (
    lambda: DeviceGone(-errno.ENODEV),
    lambda: DeviceGone(-errno.EPROTO),
    lambda: Overflow(-errno.EOVERFLOW),
    lambda: TransferError(-errno.EILSEQ),
)


class _Silence:
    """No answer at all."""


SILENCE = _Silence()
Answer = bytes | Reply | TransferError | _Silence


@dataclass
class HostileDevice:
    """A device's answers to each control request, per its hostility."""

    rng: random.Random
    device_raw: bytes
    configs: list[bytes]
    hostility: float
    late: int = 3  # answers that may still come late
    requests: int = 0

    @classmethod
    def make(cls, rng: random.Random) -> HostileDevice:
        configs = [d.config_raw(rng) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
        count = len(configs) if rng.random() < 0.9 else rng.choice((0, 1, 2, 4, 255))
        hostility = rng.choice((0.0, 0.0, 0.02, 0.1, 0.3, 0.7, 1.0))
        return cls(rng, d.device_raw(rng, configurations=count), configs, hostility)

    def answer(self, setup: SetupPacket) -> Answer:
        self.requests += 1
        honest = self._honest(setup)
        if self.rng.random() >= self.hostility:
            return honest
        roll = self.rng.random()
        if roll < 0.15:
            return Reply.STALL
        if roll < 0.22:
            return self.rng.choice(_ERRORS)()
        if roll < 0.27:
            return SILENCE
        if roll < 0.35:
            return b""
        raw = honest if isinstance(honest, bytes) else self.device_raw
        if roll < 0.55:
            return raw[: self.rng.randrange(len(raw) + 1)]
        if roll < 0.8:
            return mutate(self.rng, raw)
        return self.rng.randbytes(self.rng.choice((1, 9, 64, setup.w_length, 70000)))

    def delay(self) -> float:
        if self.late and self.rng.random() < 0.05:
            self.late -= 1
            return self.rng.choice(_LATE)
        return 0.0

    def _honest(self, setup: SetupPacket) -> Answer:
        kind, index = setup.w_value >> 8, setup.w_value & 0xFF
        if setup.b_request == Request.SET_CONFIGURATION:
            return b""
        if setup.b_request != Request.GET_DESCRIPTOR:
            return Reply.STALL
        match kind:
            case DescriptorType.DEVICE:
                return self.device_raw
            case DescriptorType.CONFIGURATION:
                return self.configs[index] if index < len(self.configs) else Reply.STALL
            case DescriptorType.STRING:
                return d.lang_ids_raw(self.rng) if index == 0 else d.string_raw(self.rng, index)
            case DescriptorType.BOS:
                return d.bos_raw(self.rng)
            case DescriptorType.DEVICE_QUALIFIER:
                return d.qualifier_raw(self.rng)
            case DescriptorType.HID_REPORT:
                return d.report_raw(self.rng, setup.w_length)
        return Reply.STALL


class DirectRemote:
    """What enumeration uses of ``RemoteDevice``, answered by a ``HostileDevice`` in memory."""

    def __init__(self, device: HostileDevice, record: UsbDevice) -> None:
        self.hostile = device
        self.device = record

    async def control(
        self, setup: SetupPacket, data: bytes = b"", *, timeout: float | None = 5.0
    ) -> bytes:
        answer = self.hostile.answer(setup)
        wait = self.hostile.delay()
        limit = float("inf") if timeout is None else timeout
        if isinstance(answer, _Silence) or wait >= limit:
            await trio.sleep(limit)
            raise UsbipTimeout(f"transfer on endpoint 0 timed out after {timeout} s")
        await trio.sleep(wait)  # a checkpoint even when 0, as a real transfer has
        if isinstance(answer, Reply):
            raise Stall(-errno.EPIPE)
        if isinstance(answer, TransferError):
            raise answer
        # USB/IP refuses an actual_length over the transfer buffer: at most wLength arrives.
        return answer[: setup.w_length] if setup.is_in else b""


def _record(rng: random.Random) -> UsbDevice:
    speed = rng.choice((*d.SPEEDS, Speed.HIGH, Speed.HIGH, 9))
    return UsbDevice("/sys/fake", "1-1", 1, 2, speed, 0x1234, 0x5678, 0, 0, 0, 0, 1, 1, 1)


async def _direct(rng: random.Random) -> DeviceSnapshot:
    remote = DirectRemote(HostileDevice.make(rng), _record(rng))
    return await enumerate_device(cast(RemoteDevice, remote), timeout=TIMEOUT)


async def _wire(rng: random.Random) -> DeviceSnapshot:
    """The real client over in-memory streams; the device behind a ``FakeRemote``."""
    hostile = HostileDevice.make(rng)
    base = DeviceSnapshot.from_raw("1-1", Speed.HIGH, d.DEVICES[0], (d.MASS_STORAGE_CONFIG,))
    remote = FakeRemote(base)

    def on_control(setup: SetupPacket, _data: bytes) -> bytes | Reply:
        answer = hostile.answer(setup)
        if isinstance(answer, _Silence):
            return Reply.HOLD
        return Reply.STALL if isinstance(answer, TransferError) else answer

    remote.on_control = on_control
    client, server = trio.testing.memory_stream_pair()
    with collapse_single():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(remote.serve, server)
            async with open_remote_device(client, "1-1", timeout=TIMEOUT) as device:
                snapshot = await enumerate_device(device, timeout=TIMEOUT)
            nursery.cancel_scope.cancel()
    return snapshot


def _afterwards(snapshot: DeviceSnapshot) -> None:
    """What ``describe`` and ``plan`` do with the snapshot."""
    json.dumps(snapshot.to_json())
    render_tree(snapshot)
    with contextlib.suppress(UsbipGadgetError):  # NoBackend: what ``plan`` prints
        plan_backend(snapshot)
    if snapshot.configurations:
        describe_plans(snapshot.configurations[0])


async def _case(rng: random.Random) -> DeviceSnapshot | None:
    enumerate_ = _wire if rng.random() < 0.1 else _direct
    with trio.move_on_after(DEADLINE):
        return await enumerate_(rng)
    return None


def enumerate_case(rng: random.Random) -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)
    snapshot = trio.run(_case, rng, clock=clock)
    if snapshot is None:
        raise Hang(f"enumeration gave no result within {DEADLINE:g} s (mock clock)")
    if len(snapshot.configurations) != snapshot.device.b_num_configurations:
        raise Invariant("a configuration was dropped or invented")
    _afterwards(snapshot)


TARGETS = [Target("enumerate", enumerate_case, (UsbipGadgetError,), 0.01, budget=20.0)]
