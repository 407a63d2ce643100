"""The server's op phase, claims, selection, TCP, and its answers to hostile clients."""

from __future__ import annotations

import contextlib
import struct
from functools import partial

import pytest
import trio
import trio.testing

from tests.server.harness import (
    FAST,
    RawClient,
    bed,
    disk,
    hub,
    keyboard,
)
from usbip_gadget._errors import ImportRefused
from usbip_gadget.client import list_devices, open_remote_device
from usbip_gadget.protocol import (
    CmdSubmit,
    CmdUnlink,
    DevlistReply,
    DevlistRequest,
    Direction,
    ExportedDevice,
    InterfaceInfo,
    OpStatus,
    UsbDevice,
)
from usbip_gadget.server import (
    ExportError,
    Selection,
    ServeOptions,
    Server,
    serve,
)
from usbip_gadget.testing import FakeSource
from usbip_gadget.usb import DescriptorType, SetupPacket, Speed

pytestmark = pytest.mark.timeout(30)

DEVICE_DESCRIPTOR = SetupPacket.get_descriptor(DescriptorType.DEVICE, 0, 18)


async def test_devlist_carries_what_usbipd_sends_then_closes() -> None:
    async with bed(disk(), keyboard(), hub()) as b:
        with trio.fail_after(5):
            raw = RawClient(b.connect())
            await raw.send(DevlistRequest())
            reply = await raw.receive()
            assert await raw.receive() is None  # one request per connection, as usbipd
    assert isinstance(reply, DevlistReply)
    assert reply.status == OpStatus.OK
    first, second = reply.devices  # the hub is selected but never exported
    assert first.device == UsbDevice(
        "/sys/devices/platform/dummy_hcd.0/usb1/1-1", "1-1", 1, 2, Speed.HIGH,
        0x0781, 0x5567, 0x0100, 0, 0, 0, 1, 1, 1,
    )  # fmt: skip
    assert first.interfaces == (InterfaceInfo(0x08, 0x06, 0x50),)
    assert (second.device.busid, second.device.speed, second.device.devnum) == ("1-2", 2, 3)
    assert (second.device.id_vendor, second.device.id_product) == (0x1234, 0xABCD)
    assert second.interfaces == (InterfaceInfo(0x03, 0x01, 0x01),)


@pytest.mark.parametrize(
    ("selection", "listed"),
    [
        (Selection.of(ids=[(0x0781, 0x5567)]), ["1-1"]),
        (Selection.of(busids=["1-2"]), ["1-2"]),
        (Selection.of(ids=[(0x0781, 0x5567)], busids=["1-2"]), ["1-1", "1-2"]),
        (Selection.of(ids=[(0x0781, 0x0001)], busids=["9-9"]), []),
        (Selection(), []),
        (Selection.of(ids=[(0x1D6B, 0x0002)], busids=["1-3"]), []),  # a hub, twice selected
    ],
)
async def test_nothing_is_exported_unless_selected(selection: Selection, listed: list[str]) -> None:
    devices = disk(), keyboard(), hub()
    async with bed(*devices, selection=selection) as b:
        with trio.fail_after(5):
            entries = await list_devices(b.connect("lister"))
            assert [e.device.busid for e in entries] == listed
            for device in devices:
                if device.busid in listed:
                    continue
                with pytest.raises(ImportRefused, match="no such device") as refused:
                    async with open_remote_device(b.connect(device.busid), device.busid):
                        pass
                assert refused.value.status == OpStatus.NODEV
                assert refused.value.reason.startswith("no such device")
    assert not any(d.claimed for d in devices)
    assert devices[0].drivers == {0: "usb-storage"}


async def test_import_claims_the_device_and_release_gives_it_back() -> None:
    d = disk()
    async with bed(d) as b:
        with trio.fail_after(5):
            async with b.imported("1-1", "alice") as remote:
                assert remote.device.busid == "1-1"
                assert remote.device.devid == (1 << 16) | 2
                assert d.claimed
                assert d.drivers == {}  # the kernel driver is detached while it is exported
                assert b.server.claimed == {"1-1"}
                assert await remote.control(DEVICE_DESCRIPTOR) == d.snapshot.device_raw
            await b.done["alice"].wait()
    assert not d.claimed
    assert d.drivers == {0: "usb-storage"}
    assert b.server.claimed == frozenset()
    assert b.log == [
        "imported 1-1 (0781:5567) by alice",
        "released 1-1 (0781:5567) from alice: closed by the client",
    ]


async def test_one_import_per_device_at_a_time() -> None:
    async with bed(disk(), keyboard()) as b:
        with trio.fail_after(5):
            async with b.imported("1-1", "alice"):
                with pytest.raises(ImportRefused, match="device busy"):
                    async with b.imported("1-1", "bob"):
                        pass
                async with b.imported("1-2", "bob") as other:  # another device is free
                    assert len(await other.control(DEVICE_DESCRIPTOR)) == 18
            await b.done["alice"].wait()
            async with b.imported("1-1", "carol") as remote:
                assert len(await remote.control(DEVICE_DESCRIPTOR)) == 18
    assert "refused 1-1 (0781:5567) to bob: already imported" in b.log


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (ExportError("1-1: permission denied", hint="run as root"), "device in error state"),
        (ExportError("1-1: no such device", gone=True), "no such device"),
    ],
)
async def test_a_device_that_cannot_be_claimed_is_refused(error: ExportError, message: str) -> None:
    d = disk()
    d.open_error = error
    async with bed(d) as b:
        with trio.fail_after(5), pytest.raises(ImportRefused, match=message):
            async with b.imported("1-1"):
                pass
    assert b.log == [f"refused 1-1 (0781:5567) to client: {error.one_line()}"]
    assert b.server.claimed == frozenset()
    assert d.drivers == {0: "usb-storage"}


# ---------------------------------------------------------------- hostile clients


def _raw_submit(seqnum: int, ep: int, direction: int, length: int) -> bytes:
    """A CMD_SUBMIT header as bytes, whatever its fields (our codec refuses to build some)."""
    basic = struct.pack(">IIIII", 1, seqnum, (1 << 16) | 2, direction, ep)
    return basic + struct.pack(">Iiiii8s", 0, length, 0, -1, 0, bytes(8))


def _held_in(seqnum: int) -> CmdSubmit:
    return CmdSubmit(seqnum, (1 << 16) | 2, Direction.IN, 1, 512)


HOSTILE = {
    "garbage": (False, [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"], "unsupported USB/IP version"),
    "truncated header": (False, [bytes.fromhex("01118003")], "in the middle of a message"),
    "unknown op": (False, [bytes.fromhex("0111 8099 00000000")], "unknown op code 0x8099"),
    "endpoint it does not have": (True, [_raw_submit(1, 5, 1, 64)], "endpoint 0x85"),
    "huge transfer": (True, [_raw_submit(1, 1, 1, 0x7FFFFFFF)], "transfer_buffer_length"),
    "seqnum reuse": (True, [_raw_submit(7, 1, 1, 64)] * 2, "seqnum 7 is already in flight"),
    "unknown command": (True, [bytes.fromhex("00000009") + bytes(44)], "expected CMD_SUBMIT"),
    "truncated command": (True, [_raw_submit(1, 1, 1, 64)[:30]], "in the middle of a message"),
    "too many in flight": (True, [_raw_submit(i, 1, 1, 64) for i in range(1, 6)], "than 4 URBs"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_hostile_client_is_dropped_and_others_are_still_served(case: str) -> None:
    imports, payloads, reason = HOSTILE[case]
    d, k = disk(), keyboard()
    async with bed(d, k, options=ServeOptions(slice_timeout=0.02, max_in_flight=4)) as b:
        with trio.fail_after(10):
            async with b.imported("1-2", "alice") as good:
                raw = RawClient(b.connect("mallory"))
                if imports:
                    await raw.import_("1-1")
                for payload in payloads:
                    await raw.stream.send_all(payload)
                if case.startswith("truncated"):
                    await raw.stream.send_eof()  # type: ignore[attr-defined]
                assert await raw.closed()
                await b.done["mallory"].wait()
                k.send_in(0x81, b"\x00\x00\x04\x00\x00\x00\x00\x00")
                assert await good.transfer_in(1, 8) == b"\x00\x00\x04\x00\x00\x00\x00\x00"
            # The hostile client's device is free again.
            async with b.imported("1-1", "carol") as again:
                assert len(await again.control(DEVICE_DESCRIPTOR)) == 18
    lines = [line for line in b.lines("mallory") if "imported" not in line]
    assert len(lines) == 1
    assert "dropped: " in lines[0]
    assert reason in lines[0]
    assert not b.lines("internal error")


async def test_a_silent_connection_is_dropped_after_the_op_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with bed(disk(), options=ServeOptions(op_timeout=30)) as b:
        stream = b.connect("idle")
        start = trio.current_time()
        await b.done["idle"].wait()
        assert trio.current_time() - start == pytest.approx(30)
        assert await stream.receive_some(10) == b""
    assert b.log == ["idle: dropped: no request within 30 s"]


async def test_a_client_that_stops_reading_is_dropped() -> None:
    d = disk()
    options = ServeOptions(slice_timeout=0.02, send_timeout=0.3)
    async with bed(d, options=options) as b:
        with trio.fail_after(10):
            client, server_end = trio.testing.lockstep_stream_pair()
            done = trio.Event()

            async def handle() -> None:
                await b.server.handle(server_end, "sleepy")
                done.set()

            b.nursery.start_soon(handle)
            raw = RawClient(client)
            await raw.import_("1-1")
            d.send_in(0x81, bytes(100))
            await raw.send(_held_in(1))  # answered, but the reply is never read
            await done.wait()
    assert b.lines("sleepy") == [
        "imported 1-1 (0781:5567) by sleepy",
        "released 1-1 (0781:5567) from sleepy: the client took no data for 0.3 s",
    ]
    assert not d.claimed


async def test_unlinks_whose_answers_are_not_read_are_bounded() -> None:
    options = ServeOptions(slice_timeout=0.02, max_pending_bytes=1000)
    async with bed(disk(), options=options) as b:
        with trio.fail_after(10):
            client, server_end = trio.testing.lockstep_stream_pair()
            done = trio.Event()

            async def handle() -> None:
                await b.server.handle(server_end, "flood")
                done.set()

            b.nursery.start_soon(handle)
            raw = RawClient(client)
            await raw.import_("1-1")
            sent = 0
            with contextlib.suppress(trio.BrokenResourceError):  # dropped part-way
                for seqnum in range(1, 100):
                    await raw.send(CmdUnlink(seqnum, (1 << 16) | 2, 1000 + seqnum))
                    sent += 1
            await done.wait()
            assert sent < 30  # 48 bytes of RET_UNLINK and its bookkeeping each: a few fit
    assert b.lines("released") == [
        "released 1-1 (0781:5567) from flood: dropped: more than 1000 bytes in flight"
    ]


async def test_op_requests_in_the_urb_phase_are_refused() -> None:
    async with bed(disk()) as b:
        with trio.fail_after(5):
            raw = RawClient(b.connect("mallory"))
            await raw.import_("1-1")
            # An OP_REQ_IMPORT, as bytes: our own state rules forbid sending it now.
            await raw.stream.send_all(bytes.fromhex("0111 8003 00000000") + b"1-1".ljust(32, b"\0"))
            assert await raw.closed()
            await b.done["mallory"].wait()
    assert "dropped: expected CMD_SUBMIT or CMD_UNLINK" in b.log[-1]


# ---------------------------------------------------------------- TCP


async def test_serve_on_loopback_serves_clients_at_once() -> None:
    d, k = disk(), keyboard()
    log: list[str] = []
    source, selection = FakeSource([d, k]), Selection.of(busids=["1-1", "1-2"])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            run = partial(serve, source, selection, port=0, options=FAST, log=log.append)
            port = await nursery.start(run)
            s1 = await trio.open_tcp_stream("127.0.0.1", port)
            s2 = await trio.open_tcp_stream("127.0.0.1", port)
            async with (
                s1,
                s2,
                open_remote_device(s1, "1-1") as one,
                open_remote_device(s2, "1-2") as two,
            ):
                waiting = await two.post(1, Direction.IN, 8)  # a key press, pending
                d.send_in(0x81, b"disk")
                assert await one.transfer_in(1, 512) == b"disk"
                k.send_in(0x81, bytes(8))
                assert (await waiting.wait()).data == bytes(8)
            nursery.cancel_scope.cancel()
    assert log[0] == f"listening on 127.0.0.1:{port}, exporting 1-1 (0781:5567), 1-2 (1234:abcd)"
    assert any(line.startswith("imported 1-1 (0781:5567) by 127.0.0.1:") for line in log)


async def test_serve_without_a_matching_device_says_so() -> None:
    source = FakeSource([disk(), hub()])
    with trio.fail_after(5), pytest.raises(ExportError, match="no local USB device matches"):
        await serve(source, Selection.of(ids=[(0xFFFF, 0xFFFE)], busids=["1-3"]), port=0)


async def test_devlist_failure_is_a_status_not_a_crash() -> None:
    class Broken(FakeSource):
        def devices(self) -> list[ExportedDevice]:
            raise ExportError("cannot list the USB devices: LIBUSB_ERROR_IO")

    log: list[str] = []
    server = Server(Broken([]), Selection.of(busids=["1-1"]), log=log.append)
    client, server_end = trio.testing.memory_stream_pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.handle, server_end, "lister")
            raw = RawClient(client)
            await raw.send(DevlistRequest())
            assert await raw.receive() == DevlistReply(status=OpStatus.ERROR)
    assert log == ["lister: cannot list devices: cannot list the USB devices: LIBUSB_ERROR_IO"]
