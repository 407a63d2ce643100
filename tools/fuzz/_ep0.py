"""Target 4a: GadgetFS's ep0 machine (``gadget/gadgetfs/_ep0.py``) without I/O.

The case plays both its driver and the bridge. As the driver it answers each action with an
outcome that action can have — reads of at most the length asked, holding event records
(realistic SETUPs, CONNECT, DISCONNECT, SUSPEND, unknown types), partial records or random
bytes; errnos the kernel gives (EAGAIN, EIDRM, EL2HLT, EIO, ESHUTDOWN, ECANCELED) and
others; endpoint files refused — and it runs prefetches the way ``GadgetFsGadget`` does
(abandoned only while waiting for events). As the bridge it answers every SETUP delivered:
IN with data of any length or a stall, OUT by receiving. In a fifth of the cases the bridge
is careless instead and makes any call after any answer. Only the ``GadgetError`` family may
escape, and the machine must never write more than the request's wLength, nor collect OUT
data of another length than wLength.
"""

from __future__ import annotations

import errno
import random
import struct
from collections.abc import Callable
from functools import cache

from tools.fuzz import _descriptors as d
from tools.fuzz._harness import Invariant, Target
from tools.fuzz._mutate import edge_u16

from usbip_gadget import GadgetError, UsbipGadgetError
from usbip_gadget.gadget import Ep0EventType
from usbip_gadget.gadget.gadgetfs._ep0 import GadgetFsEp0
from usbip_gadget.gadget.gadgetfs._ep0_actions import (
    DONE,
    Action,
    Answer,
    CloseEndpoints,
    CollectOutData,
    Deliver,
    Failed,
    HostGone,
    Idle,
    OpenSetting,
    Outcome,
    Read,
    ReadEp0,
    ReadEvents,
    Refused,
    WriteEp0,
)
from usbip_gadget.gadget.gadgetfs._ep0_events import GadgetFsEventType, pack_event
from usbip_gadget.usb import Configuration, SetupPacket, parse_configuration

T = GadgetFsEventType
# What each call fails with in the normal course of things (a host that moved on, data not
# sent yet, a stall); anything else, now and then, ends the bridge's call with an error.
_EXPECTED: dict[type, tuple[int, ...]] = {
    ReadEvents: (errno.EIDRM, errno.EL2HLT),
    ReadEp0: (errno.EAGAIN, errno.EIDRM, errno.EL2HLT),
    CollectOutData: (errno.ECANCELED, errno.EIDRM, errno.EIO),
    WriteEp0: (errno.EIDRM, errno.EL2HLT),
}
_FATAL = (errno.EIO, errno.ESHUTDOWN, errno.ENODEV, errno.EINVAL)
_STEPS = 30  # calls and outcomes per case


@cache
def _configs() -> tuple[Configuration, ...]:
    made = random.Random("gadgetfs-ep0 configurations")
    found = []
    for raw in [*d.CONFIGS, *(d.structural_config(made) for _ in range(64))]:
        try:
            found.append(parse_configuration(raw, lenient=True))
        except UsbipGadgetError:
            continue
    return tuple(found)


def _setup(rng: random.Random, config: Configuration) -> SetupPacket:
    interfaces = [*config.interfaces(), rng.randrange(256)]
    value = config.b_configuration_value
    choices: list[Callable[[], SetupPacket]] = [
        lambda: SetupPacket.set_configuration(rng.choice((0, value, value, rng.randrange(256)))),
        lambda: SetupPacket.set_interface(rng.choice(interfaces), rng.choice((0, 1, 2, 255))),
        lambda: SetupPacket(0x80, 6, 0x0300 | rng.randrange(5), 0x0409, rng.choice((2, 255))),
        lambda: SetupPacket(0x21, 0x20, 0, rng.choice(interfaces), rng.choice((1, 7, 64, 4096))),
        lambda: SetupPacket(0x21, 0x22, 3, rng.choice(interfaces) & 0xFF, 0),
        lambda: SetupPacket(0xC0, rng.randrange(256), 0, 0, edge_u16(rng)),
        lambda: SetupPacket(0x40, rng.randrange(256), 0, 0, edge_u16(rng)),
        lambda: SetupPacket.parse(rng.randbytes(8)),
    ]
    return rng.choice(choices)()


def _pool(rng: random.Random, config: Configuration) -> list[bytes]:
    """The event records one case draws from: its requests, the other events, junk."""
    records = [pack_event(T.SETUP, _setup(rng, config)) for _ in range(12)]
    records += [pack_event(t) for t in (T.CONNECT, T.DISCONNECT, T.SUSPEND, T.NOP)] * 2
    records += [rng.randbytes(8) + struct.pack("<I", rng.choice((5, 77, 0xFFFFFFFF)))]
    return records


def _records(rng: random.Random, pool: list[bytes], length: int) -> bytes:
    out = b"".join(rng.choice(pool) for _ in range(rng.choice((1, 1, 1, 2, 3, 5))))
    roll = rng.random()
    if roll < 0.05:
        out = out[: rng.randrange(len(out) + 1)]  # a partial record
    elif roll < 0.08:
        out = rng.randbytes(rng.randrange(61))
    return out[:length]


class Case:
    """One machine, the driver's outcomes and the bridge's calls."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.config = rng.choice(_configs())
        self.ep0 = GadgetFsEp0(self.config, "/dev/gadget/ep0")
        self.records = _pool(rng, self.config)
        self.careless = rng.random() < 0.2
        self.steps = 0

    def failed(self, action: Action) -> Failed:
        roll = self.rng.random()
        if roll < 0.95:
            if isinstance(action, ReadEp0) and action.length == 0:
                return Failed(errno.EIDRM)  # a status stage the host no longer waits for
            return Failed(self.rng.choice(_EXPECTED[type(action)]))
        return Failed(self.rng.choice(_FATAL) if roll < 0.98 else self.rng.randrange(1, 140))

    def outcome(self, action: Action) -> Outcome:
        rng = self.rng
        match action:
            case ReadEvents(length) | ReadEp0(length) if length >= 12 and rng.random() < 0.8:
                return Read(_records(rng, self.records, length))
            case ReadEvents() | ReadEp0() | CollectOutData():
                if rng.random() < 0.2:
                    return self.failed(action)
                return Read(rng.randbytes(min(action.length, rng.choice((0, 1, 7, 12, 64)))))
            case WriteEp0(b""):  # a stall, normally
                return Failed(errno.EL2HLT) if rng.random() < 0.7 else self.failed(action)
            case WriteEp0():
                return DONE if rng.random() < 0.85 else self.failed(action)
            case OpenSetting():
                refusals = (Refused(HostGone("gone")), Refused(GadgetError("refused")))
                return DONE if rng.random() < 0.97 else rng.choice(refusals)
            case CloseEndpoints():
                return DONE
        raise Invariant(f"the machine asked for {action!r}")

    def check(self, action: Action) -> None:
        request = self.ep0.state.request
        if isinstance(action, WriteEp0) and request and len(action.data) > request.w_length:
            raise Invariant(f"wrote {len(action.data)} bytes for wLength {request.w_length}")
        if isinstance(action, ReadEvents | ReadEp0 | CollectOutData) and action.length < 0:
            raise Invariant(f"{action!r}")

    def run(self, action: Action) -> Action:
        """Perform actions until one ends the call."""
        while not isinstance(action, Deliver | Answer | Idle):
            self.tick()
            self.check(action)
            action = self.ep0.send(self.outcome(action))
        return action

    def tick(self) -> None:
        self.steps += 1
        if self.steps > _STEPS:
            raise _Enough

    def prefetch(self) -> None:
        """A background prefetch, stopped as ``GadgetFsGadget`` stops it: only while it
        waits for events; otherwise it runs on until it ends."""
        action = self.ep0.prefetch()
        while not isinstance(action, Idle):
            if isinstance(action, ReadEvents) and self.rng.random() < 0.4:
                return
            self.tick()
            self.check(action)
            action = self.ep0.send(self.outcome(action))

    def answer(self, delivered: Deliver) -> None:
        """The bridge answers each SETUP delivered."""
        for event in delivered.events:
            if event.type != Ep0EventType.SETUP or event.setup is None:
                continue
            setup = event.setup
            if setup.is_in:
                call = self.ep0.stall if self.rng.random() < 0.2 else self._reply
            elif setup.w_length or self.rng.random() < 0.7:
                call = self._receive(setup)
            else:
                call = self.ep0.stall
            try:
                self.run(call())
            except GadgetError:
                continue  # the bridge drops the request ("control request dropped")

    def _reply(self) -> Action:
        size = self.rng.choice((0, 1, 8, 18, 255, 256, 4096, 70000))
        return self.ep0.reply(self.rng.randbytes(size))

    def _receive(self, setup: SetupPacket) -> Callable[[], Action]:
        def receive() -> Action:
            action = self.ep0.receive()
            if isinstance(action, Answer) and len(action.data) > setup.w_length:
                raise Invariant(f"received {len(action.data)} bytes for wLength {setup.w_length}")
            return action

        return receive

    def careful(self) -> None:
        action = self.run(self.ep0.claim() if self.rng.random() < 0.3 else self.ep0.events())
        while True:
            if isinstance(action, Deliver):
                if action.prefetch:
                    self.prefetch()
                self.answer(action)
            action = self.run(self.ep0.events())

    def sloppy(self) -> None:
        action = self.run(self.ep0.claim() if self.rng.random() < 0.3 else self.ep0.events())
        while True:
            calls: list[Callable[[], Action]] = [self.ep0.events, self.ep0.stall, self._reply]
            calls.append(self.ep0.receive)
            if isinstance(action, Deliver) and action.prefetch:
                calls.append(self.ep0.prefetch)
            action = self.run(self.rng.choice(calls)())


class _Enough(Exception):
    """The case has made its calls."""


def ep0_case(rng: random.Random) -> None:
    case = Case(rng)
    try:
        if case.careless:
            case.sloppy()
        else:
            case.careful()
    except _Enough:
        return


TARGETS = [Target("gadgetfs-ep0", ep0_case, (GadgetError,), 0.105)]
