"""The GadgetFS backend's ep0 handling against a model of legacy/inode.c's ep0 file.

The model keeps what the kernel keeps: a queue of 12-byte events whose reads end at the first
SETUP and put ep0 in its SETUP state; in that state a read is the data stage (a stall for an IN
request, the acknowledgement when of length 0, the OUT data otherwise) and a write answers an
IN request or stalls an OUT one. Endpoint files are /dev/null descriptors whose configuration
writes are recorded. The gadget makes its system calls on the model through ``Syscalls``.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.usb.vectors import CDC_ECM_CONFIG, MASS_STORAGE_DEVICE
from usbip_gadget.gadget import KNOWN_ENDPOINT_FILES, Ep0EventType
from usbip_gadget.gadget.gadgetfs import (
    GadgetFsGadget,
    Syscalls,
    gadgetfs_layout,
    map_endpoints,
)
from usbip_gadget.usb import DeviceSnapshot, SetupPacket, Speed

CONNECT, DISCONNECT, SETUP = 1, 2, 3
MOUNT = Path("/gadgetfs")


class Ep0Model:
    """ep0 of GadgetFS, as far as user space can tell, plus endpoint files."""

    def __init__(self) -> None:
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.queue: list[bytes] = []
        self.in_setup: SetupPacket | None = None
        self.out_data = b""
        self.log: list[Any] = []
        self.files: dict[int, str] = {}
        self.fail_next_read: int | None = None

    # -- the test's side
    def push(self, kind: int, setup: SetupPacket | None = None, data: bytes = b"") -> None:
        payload = setup.pack() if setup is not None else bytes(8)
        if kind == SETUP:  # next_event(): an unread SETUP is replaced by a newer one
            self.queue = [e for e in self.queue if struct.unpack("<8sI", e)[1] != SETUP]
        self.queue.append(struct.pack("<8sI", payload, kind))
        if kind == SETUP and setup is not None and not setup.is_in:
            self.out_data = data
        os.write(self.wake_w, b"x")

    # -- the backend's side (the system calls it makes)
    def read(self, fd: int, length: int) -> bytes:
        assert fd == self.wake_r
        if self.fail_next_read is not None:
            code, self.fail_next_read = self.fail_next_read, None
            raise OSError(code, os.strerror(code))
        setup = self.in_setup
        if setup is not None:
            self.in_setup = None
            if setup.is_in:
                self.log.append(("stall", setup.b_request))
                raise OSError(errno.EL2HLT, "stalled")
            if length == 0:
                self.log.append(("ack", setup.b_request))
                return b""
            self.log.append(("data", setup.b_request))
            return self.out_data[:length]
        if not self.queue:
            raise BlockingIOError(errno.EAGAIN, "no events")
        out: list[bytes] = []
        while self.queue and len(out) * 12 + 12 <= length:
            event = self.queue.pop(0)
            out.append(event)
            os.read(self.wake_r, 1)
            if struct.unpack("<8sI", event)[1] == SETUP:
                self.in_setup = SetupPacket.parse(event[:8])
                break
        return b"".join(out)

    def write(self, fd: int, data: bytes) -> int:
        if fd in self.files:
            self.log.append(("config", self.files[fd], bytes(data)))
            return len(data)
        setup = self.in_setup
        assert setup is not None, "a write on ep0 outside a SETUP"
        self.in_setup = None
        if setup.is_in:
            self.log.append(("reply", bytes(data[: setup.w_length])))
            return len(data)
        self.log.append(("stall", setup.b_request))
        raise OSError(errno.EL2HLT, "stalled")

    def open(self, path: Any, flags: int) -> int:
        fd = os.open(os.devnull, os.O_RDWR)
        self.files[fd] = Path(path).name
        self.log.append(("open", Path(path).name))
        return fd

    def close(self, fd: int) -> None:
        self.log.append(("close", self.files.pop(fd, fd)))
        os.close(fd)

    def set_blocking(self, fd: int, blocking: bool) -> None:
        pass

    def syscalls(self) -> Syscalls:
        """The gadget's system calls, made on this model (its endpoint files' closes too)."""
        return Syscalls(
            read=self.read,
            write=self.write,
            open=self.open,
            close=self.close,
            set_blocking=self.set_blocking,
            blocking_read=self.read,
        )


@pytest.fixture
def model() -> Iterator[Ep0Model]:
    fake = Ep0Model()
    yield fake
    os.close(fake.wake_r)
    os.close(fake.wake_w)


def make_gadget(model: Ep0Model) -> GadgetFsGadget:
    snapshot = DeviceSnapshot.from_raw("1-1", Speed.HIGH, MASS_STORAGE_DEVICE, (CDC_ECM_CONFIG,))
    config = snapshot.configurations[0]
    slots = map_endpoints(config, KNOWN_ENDPOINT_FILES["dummy_udc"])
    layout = gadgetfs_layout(snapshot, slots)
    return GadgetFsGadget(model.wake_r, MOUNT, config, layout, model.syscalls())


def kinds(events: list[Any]) -> list[Ep0EventType]:
    return [event.type for event in events]


async def configured(model: Ep0Model, gadget: GadgetFsGadget) -> None:
    model.push(CONNECT)
    model.push(SETUP, SetupPacket.set_configuration(1))
    assert kinds(await gadget.events()) == [Ep0EventType.ENABLE]


async def test_set_configuration_opens_setting_0_then_enables_then_acknowledges(
    model: Ep0Model,
) -> None:
    gadget = make_gadget(model)
    await configured(model, gadget)
    # Interface 0's interrupt endpoint; interface 1's setting 0 has none.
    assert model.log == [
        ("open", "ep1in-bulk"),
        ("config", "ep1in-bulk", bytes.fromhex("010000000705810310002007058103100009")),
    ]
    assert [ep.descriptor.b_endpoint_address for ep in gadget.endpoints] == [0x81]
    # The status stage waits until the bridge asks for more, after configuring the device.
    model.push(SETUP, SetupPacket(0x80, 6, 0x0300, 0, 255))
    events = await gadget.events()
    assert model.log[2] == ("ack", 9)
    assert kinds(events) == [Ep0EventType.SETUP]


async def test_set_interface_stops_the_pumps_switches_the_files_and_resumes(
    model: Ep0Model,
) -> None:
    gadget = make_gadget(model)
    await configured(model, gadget)
    model.push(SETUP, SetupPacket.set_interface(1, 1))
    events = await gadget.events()
    assert model.log[-1] == ("ack", 9)  # SET_CONFIGURATION's, before the event was read
    assert kinds(events) == [Ep0EventType.SUSPEND, Ep0EventType.SETUP]
    del model.log[:]
    assert await gadget.receive() == b""  # the bridge applied it on the device: acknowledge
    opened = [entry[1] for entry in model.log if entry[0] == "open"]
    assert opened == ["ep2in-bulk", "ep1out-bulk"]
    assert model.log[-1] == ("ack", 11)
    assert sorted(ep.descriptor.b_endpoint_address for ep in gadget.endpoints) == [0x01, 0x81, 0x82]
    assert kinds(await gadget.events()) == [Ep0EventType.RESUME]


async def test_a_disconnect_disables_and_the_files_close_once_the_pumps_stopped(
    model: Ep0Model,
) -> None:
    gadget = make_gadget(model)
    await configured(model, gadget)
    model.push(DISCONNECT)
    assert kinds(await gadget.events()) == [Ep0EventType.DISABLE]
    assert ("close", "ep1in-bulk") not in model.log  # the bridge stops its pumps first
    model.push(SETUP, SetupPacket(0x80, 6, 0x0300, 0, 255))
    await gadget.events()
    assert ("close", "ep1in-bulk") in model.log
    assert gadget.endpoints == ()


async def test_out_data_is_read_with_its_event(model: Ep0Model) -> None:
    gadget = make_gadget(model)
    line_coding = SetupPacket(0x21, 0x20, 0, 0, 7)
    model.push(SETUP, line_coding, data=bytes.fromhex("00e10000020207"))
    events = await gadget.events()
    assert events[0].setup == line_coding
    assert model.log == [("data", 0x20)]  # before the bridge saw the request
    assert await gadget.receive() == bytes.fromhex("00e10000020207")


async def test_in_replies_are_cut_to_wlength_and_stalls_are_quiet(model: Ep0Model) -> None:
    gadget = make_gadget(model)
    model.push(SETUP, SetupPacket(0x80, 6, 0x0301, 0x0409, 4))
    await gadget.events()
    await gadget.reply(b"\x0a\x03a\x00b\x00c\x00d\x00")
    model.push(SETUP, SetupPacket(0xC0, 1, 0, 0, 8))
    await gadget.events()
    await gadget.stall()
    assert model.log == [("reply", b"\x0a\x03a\x00"), ("stall", 1)]


async def test_a_request_stalled_before_its_event_was_read_is_skipped(model: Ep0Model) -> None:
    gadget = make_gadget(model)
    model.fail_next_read = errno.EL2HLT  # the read stalled a request whose event is queued
    model.push(SETUP, SetupPacket(0x80, 6, 0x0302, 0x0409, 255))
    got: list[Any] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def read() -> None:
                got.extend(await gadget.events())

            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            model.push(SETUP, SetupPacket(0x80, 6, 0x0303, 0x0409, 255))
    assert [e.setup.w_value for e in got if e.setup is not None] == [0x0303]
    assert model.log == [("stall", 6)]  # the stale one's SETUP ended; the next one answered


async def test_a_reset_read_in_one_batch_with_the_next_request_loses_nothing(
    model: Ep0Model,
) -> None:
    gadget = make_gadget(model)
    await configured(model, gadget)
    # A bus reset while configured: DISCONNECT, CONNECT and the next SETUP in one read.
    model.push(DISCONNECT)
    model.push(CONNECT)
    model.push(SETUP, SetupPacket(0x80, 6, 0x0100, 0, 64))
    assert kinds(await gadget.events()) == [Ep0EventType.DISABLE]
    with trio.fail_after(5):  # a dropped SETUP would leave events() waiting
        events = await gadget.events()
    assert kinds(events) == [Ep0EventType.SETUP]
    assert events[0].setup == SetupPacket(0x80, 6, 0x0100, 0, 64)
    assert ("close", "ep1in-bulk") in model.log


async def test_requests_sent_while_an_out_request_is_forwarded_are_read_meanwhile(
    model: Ep0Model,
) -> None:
    gadget = make_gadget(model)
    first = SetupPacket(0x21, 0x20, 0, 0, 7)
    second = SetupPacket(0x21, 0x20, 0, 1, 7)
    async with trio.open_nursery() as nursery:
        gadget.run_prefetch_in(nursery)
        model.push(SETUP, first, data=b"1111111")
        assert [e.setup for e in await gadget.events()] == [first]
        assert await gadget.receive() == b"1111111"
        # While the bridge forwards it, the controller takes another OUT request and the
        # host goes on to a third: GadgetFS would drop the second's unread event.
        model.push(SETUP, second, data=b"2222222")
        await trio.testing.wait_all_tasks_blocked()
        model.push(SETUP, SetupPacket(0x80, 6, 0x0300, 0, 255))
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(5):
            events = await gadget.events()
        assert [e.setup for e in events] == [second]
        assert await gadget.receive() == b"2222222"
        events = await gadget.events()
        assert [e.setup.w_value for e in events if e.setup is not None] == [0x0300]
        nursery.cancel_scope.cancel()
