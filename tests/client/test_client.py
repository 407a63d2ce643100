"""The trio client against scripted servers over in-memory streams."""

from __future__ import annotations

import errno
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from tests.client.fakes import FakeServer, FakeUsbDevice, disk, keyboard
from usbip_gadget import RemoteProtocolError, TransportError
from usbip_gadget._errors import DeviceGone, ImportRefused, Stall, UsbipTimeout
from usbip_gadget._groups import collapse_ours, collapse_single
from usbip_gadget.client import RemoteDevice, enumerate_device, list_devices, open_remote_device
from usbip_gadget.protocol import (
    DEFAULT_MAX_TRANSFER,
    CmdSubmit,
    CmdUnlink,
    Connection,
    Direction,
    RetSubmit,
    RetUnlink,
)
from usbip_gadget.protocol._urb_codec import pack_urb
from usbip_gadget.usb import DescriptorType, Request, SetupPacket, Speed

pytestmark = pytest.mark.timeout(30)


@asynccontextmanager
async def connected(server: FakeServer) -> AsyncIterator[trio.abc.Stream]:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    with collapse_single():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve, server_stream)
            yield client_stream
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def imported(server: FakeServer, busid: str = "1-1") -> AsyncIterator[RemoteDevice]:
    async with connected(server) as stream, open_remote_device(stream, busid) as remote:
        yield remote


@pytest.mark.parametrize("trickle", [False, True])
async def test_list_devices(trickle: bool) -> None:
    server = FakeServer([keyboard(), disk()], trickle=trickle)
    with trio.fail_after(5):
        async with connected(server) as stream:
            devices = await list_devices(stream)
    assert [d.device.busid for d in devices] == ["1-1", "1-2"]
    assert (devices[0].device.id_vendor, devices[0].device.id_product) == (0x1234, 0xABCD)
    assert devices[0].interfaces[0].b_interface_class == 3


@pytest.mark.parametrize(
    ("busid", "busy", "message"),
    [("1-1", {"1-1"}, "device busy"), ("9-9", set(), "no such device")],
)
async def test_import_refused(busid: str, busy: set[str], message: str) -> None:
    server = FakeServer([keyboard()], busy=busy)
    with (
        trio.fail_after(5),
        pytest.raises(ImportRefused, match=f"cannot import {busid}: {message}"),
    ):
        async with imported(server, busid):
            pass


@pytest.mark.parametrize("trickle", [False, True])
async def test_enumerate_reads_everything_a_host_reads(trickle: bool) -> None:
    fake = keyboard()
    server = FakeServer([fake], trickle=trickle)
    with trio.fail_after(10):
        async with imported(server) as remote:
            snapshot = await enumerate_device(remote)
    assert snapshot.device_raw == fake.device_raw
    assert snapshot.configurations_raw == tuple(fake.configs_raw)
    assert snapshot.speed == Speed.HIGH
    assert snapshot.lang_ids == (0x0409, 0x0407)
    assert snapshot.strings[0x0409] == {1: "Acme", 2: "Keyboard", 3: "K-0001"}
    assert snapshot.strings[0x0407] == {1: "Acme", 2: "Tastatur"}  # index 3 stalls in German
    assert snapshot.bos_raw == fake.bos
    assert snapshot.device_qualifier_raw == fake.qualifier
    assert snapshot.hid_reports == {(1, 0): fake.hid_reports[0]}
    # The configuration was read as a host reads it: 9 bytes first, then wTotalLength.
    config_reads = [
        SetupPacket.parse(m.setup).w_length
        for m in server.received
        if isinstance(m, CmdSubmit)
        and m.ep == 0
        and SetupPacket.parse(m.setup).w_value >> 8 == DescriptorType.CONFIGURATION
    ]
    assert config_reads == [9, len(fake.configs_raw[0])]
    # The report descriptor was read in a configuration, as a host's HID driver does.
    requests = [
        (setup.b_request, setup.w_value >> 8)
        for m in server.received
        if isinstance(m, CmdSubmit) and m.ep == 0
        for setup in [SetupPacket.parse(m.setup)]
    ]
    set_config = requests.index((Request.SET_CONFIGURATION, 0))
    assert requests.index((Request.GET_DESCRIPTOR, DescriptorType.HID_REPORT)) > set_config


async def test_enumerate_full_speed_usb2_device_skips_bos_and_qualifier() -> None:
    fake = disk()
    fake.speed = 2
    server = FakeServer([fake])
    with trio.fail_after(5):
        async with imported(server, "1-2") as remote:
            snapshot = await enumerate_device(remote)
    assert snapshot.bos_raw is None
    assert snapshot.device_qualifier_raw is None
    assert snapshot.strings == {}
    kinds = {
        SetupPacket.parse(m.setup).w_value >> 8 for m in server.received if isinstance(m, CmdSubmit)
    }
    assert kinds == {DescriptorType.DEVICE, DescriptorType.CONFIGURATION}


async def test_many_in_flight_complete_out_of_order() -> None:
    server = FakeServer([disk()], handler=lambda cmd: None)
    results: dict[int, bytes] = {}

    async def one(remote: RemoteDevice, i: int) -> None:
        results[i] = await remote.transfer_in(1, 512)

    with trio.fail_after(5):
        async with imported(server, "1-2") as remote, trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(one, remote, i)
            await trio.testing.wait_all_tasks_blocked()
            assert len(server.held) == 20
            assert remote.in_flight == 20
            for seqnum in sorted(server.held, reverse=True):
                await server.release(seqnum)
    seqnums = {int.from_bytes(v, "big") for v in results.values()}
    assert len(results) == 20
    assert len(seqnums) == 20


async def test_timeout_unlinks_the_urb(autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer([disk()], handler=lambda cmd: None)
    async with imported(server, "1-2") as remote:
        with pytest.raises(UsbipTimeout, match="endpoint 1 timed out after 2 s"):
            await remote.transfer_in(1, 64, timeout=2)
        assert remote.in_flight == 0
    unlinks = [m for m in server.received if isinstance(m, CmdUnlink)]
    submits = [m for m in server.received if isinstance(m, CmdSubmit)]
    assert [u.unlink_seqnum for u in unlinks] == [submits[0].seqnum]
    assert server.held == {}


async def test_unlink_race_completion_wins(autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer([disk()], handler=lambda cmd: None, complete_on_unlink=True)
    async with imported(server, "1-2") as remote:
        # The device finishes as the unlink arrives: the data is not lost.
        data = await remote.transfer_in(1, 64, timeout=1)
        assert len(data) == 4
        assert any(isinstance(m, CmdUnlink) for m in server.received)
        # The connection is still healthy.
        server.handler = None
        assert await remote.transfer_out(2, b"x" * 31) == 31


async def test_unlink_race_late_reply_after_unlink_is_ignored(
    autojump_clock: trio.abc.Clock,
) -> None:
    server = FakeServer([disk()], handler=lambda cmd: None)
    async with imported(server, "1-2") as remote:
        with pytest.raises(UsbipTimeout):
            await remote.transfer_in(1, 64, timeout=1)
        # A careless server still sends the RET_SUBMIT of the unlinked URB afterwards.
        seqnum = next(m.seqnum for m in server.received if isinstance(m, CmdSubmit) and m.ep == 1)
        assert server._stream is not None  # raw bytes: our own state rules forbid this reply
        late = RetSubmit(seqnum, 0, 4, b"late")
        await server._stream.send_all(pack_urb(late, max_transfer=DEFAULT_MAX_TRANSFER))
        server.handler = None
        assert len(await remote.transfer_in(1, 64)) == 4
        assert remote.failure is None


async def test_cancelled_transfer_is_unlinked(autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer([disk()], handler=lambda cmd: None)
    async with imported(server, "1-2") as remote:
        with trio.move_on_after(3):
            await remote.transfer_in(1, 64)
        assert remote.in_flight == 0
    assert [type(m).__name__ for m in server.received[-2:]] == ["CmdSubmit", "CmdUnlink"]


async def test_stall_and_status_mapping() -> None:
    statuses = iter([-errno.EPIPE, -errno.ENODEV, -errno.EOVERFLOW])
    server = FakeServer([disk()], handler=lambda c: RetSubmit(c.seqnum, next(statuses)))
    with trio.fail_after(5):
        async with imported(server, "1-2") as remote:
            with pytest.raises(Stall, match="EPIPE"):
                await remote.transfer_in(1, 64)
            with pytest.raises(Exception, match="ENODEV") as info:
                await remote.transfer_in(1, 64)
            assert type(info.value).__name__ == "DeviceGone"
            result = await remote.submit(1, Direction.IN, 64, check=False)
            assert result.status == -errno.EOVERFLOW


async def test_control_stall_on_unknown_descriptor() -> None:
    with trio.fail_after(5):
        async with imported(FakeServer([disk()]), "1-2") as remote:
            with pytest.raises(Stall):
                await remote.control(SetupPacket.get_descriptor(DescriptorType.BOS, 0, 5))


async def test_server_closing_fails_pending_and_later_transfers() -> None:
    server = FakeServer([disk()], handler=lambda cmd: None)
    with trio.fail_after(5):
        async with connected(server) as stream, open_remote_device(stream, "1-2") as remote:
            async with trio.open_nursery() as nursery:

                async def close_server() -> None:
                    await trio.testing.wait_all_tasks_blocked()
                    assert server._stream is not None
                    await server._stream.aclose()

                nursery.start_soon(close_server)
                with pytest.raises(TransportError, match="closed the connection"):
                    await remote.transfer_in(1, 64)
            with pytest.raises(TransportError):
                await remote.transfer_out(2, b"abc")
            assert remote.closed.is_set()


async def test_hostile_reply_is_a_protocol_error_not_a_crash() -> None:
    # actual_length larger than requested: must be rejected before any byte is used.
    server = FakeServer([disk()], handler=lambda c: None)
    with trio.fail_after(5):
        async with imported(server, "1-2") as remote, trio.open_nursery() as nursery:

            async def lie() -> None:
                await trio.testing.wait_all_tasks_blocked()
                assert server._stream is not None
                (seqnum,) = server.held
                header = seqnum.to_bytes(4, "big")
                await server._stream.send_all(
                    bytes.fromhex("00000003") + header + bytes(12) + bytes(4)
                    + (1000).to_bytes(4, "big") + bytes(20) + bytes(1000)
                )  # fmt: skip

            nursery.start_soon(lie)
            with pytest.raises(RemoteProtocolError, match=r"actual_length 1000 outside 0\.\.64"):
                await remote.transfer_in(1, 64)
            assert isinstance(remote.failure, RemoteProtocolError)


async def test_iso_in_roundtrip() -> None:
    def handler(cmd: CmdSubmit) -> RetSubmit:
        packets = tuple(type(p)(p.offset, p.length, min(p.length, 3), 0) for p in cmd.iso_packets)
        data = b"".join(bytes([i]) * p.actual_length for i, p in enumerate(packets))
        return RetSubmit(cmd.seqnum, 0, len(data), data, 0, len(packets), 0, packets)

    from usbip_gadget.client import unpack_iso_in

    with trio.fail_after(5):
        async with imported(FakeServer([disk()], handler=handler), "1-2") as remote:
            result = await remote.iso_in(3, [8, 8, 8])
    assert result.actual_length == 9
    assert (
        unpack_iso_in(result, 24)
        == b"\0" * 3 + b"\0" * 5 + b"\1" * 3 + b"\0" * 5 + b"\2" * 3 + b"\0" * 5
    )


def test_fake_device_is_consistent() -> None:
    fake: FakeUsbDevice = keyboard()
    status, data = fake.control(SetupPacket.get_descriptor(DescriptorType.DEVICE, 0, 18))
    assert (status, len(data)) == (0, 18)


async def test_cancelled_before_sending_sends_no_unlink() -> None:
    server = FakeServer([disk()], handler=lambda cmd: None)
    with trio.fail_after(5):
        async with imported(server, "1-2") as remote:
            with trio.CancelScope() as scope:
                scope.cancel()
                await remote.transfer_in(1, 64)
            assert remote.in_flight == 0
            server.handler = None
            assert len(await remote.transfer_in(1, 64)) == 4
    assert not any(isinstance(m, CmdUnlink) for m in server.received)


async def test_unanswered_unlink_is_sent_once(autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer([disk()], handler=lambda cmd: None)
    async with imported(server, "1-2") as remote:
        server.ignore_unlinks = True
        with pytest.raises(UsbipTimeout):
            await remote.transfer_in(1, 64, timeout=1)
    assert sum(isinstance(m, CmdUnlink) for m in server.received) == 1


async def test_unlink_answered_alone_with_status_0_settles_the_urb(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Linux stub_complete: a URB that completes while its unlink is under way is answered by
    # RET_UNLINK(status 0) alone, with no RET_SUBMIT.
    server = FakeServer([disk()], handler=lambda cmd: None, ignore_unlinks=True)
    async with imported(server, "1-2") as remote, trio.open_nursery() as nursery:

        async def answer_unlink() -> None:
            await trio.sleep(1.05)  # the client's timeout fires at 1 s and sends its unlink
            unlink = next(m for m in server.received if isinstance(m, CmdUnlink))
            assert server._stream is not None
            await server._stream.send_all(
                pack_urb(RetUnlink(unlink.seqnum, 0), max_transfer=DEFAULT_MAX_TRANSFER)
            )

        nursery.start_soon(answer_unlink)
        start = trio.current_time()
        assert await remote.transfer_in(1, 64, timeout=1) == b""
        assert trio.current_time() - start < 1.5  # settled at once, not after unlink_timeout
        conn = remote._conn
        assert isinstance(conn, Connection)
        assert conn.state.pending == frozenset()


async def test_send_to_a_server_that_stops_reading_times_out(
    autojump_clock: trio.abc.Clock,
) -> None:
    client, server_end = trio.testing.lockstep_stream_pair()
    server = FakeServer([disk()])
    async with trio.open_nursery() as nursery:

        async def serve_import_then_stop() -> None:
            await server.serve_until_import(server_end)

        nursery.start_soon(serve_import_then_stop)
        async with open_remote_device(client, "1-2", timeout=1) as remote:
            # The writer's send makes no progress for the send timeout: the connection ends
            # (a message may be half sent), and every call says why, once per call.
            with pytest.raises(UsbipTimeout, match="the server took no data for 1 s"):
                await remote.transfer_out(2, b"x" * 64)
            for _ in range(3):
                with pytest.raises(UsbipTimeout, match="took no data") as info:
                    await remote.transfer_out(2, b"x")
                assert len(list(traceback.walk_tb(info.value.__traceback__))) < 10
            assert remote.closed.is_set()
        nursery.cancel_scope.cancel()


async def test_outer_cancellation_does_not_leak_a_group() -> None:
    server = FakeServer([disk()], handler=lambda cmd: None)
    with trio.move_on_after(0.2) as scope:
        async with imported(server, "1-2") as remote:
            await remote.transfer_in(1, 64)
    assert scope.cancelled_caught


async def test_iso_out_carries_one_packet_per_element() -> None:
    def handler(cmd: CmdSubmit) -> RetSubmit:
        packets = tuple(type(p)(p.offset, p.length, p.length, 0) for p in cmd.iso_packets)
        return RetSubmit(
            cmd.seqnum, 0, cmd.transfer_buffer_length, b"", 0, len(packets), 0, packets
        )

    server = FakeServer([disk()], handler=handler)
    with trio.fail_after(5):
        async with imported(server, "1-2") as remote:
            result = await remote.iso_out(4, [b"ab", b"", b"cde"])
    (cmd,) = [m for m in server.received if isinstance(m, CmdSubmit) and m.ep == 4]
    assert cmd.data == b"abcde"
    assert [(p.offset, p.length) for p in cmd.iso_packets] == [(0, 2), (2, 0), (2, 3)]
    assert cmd.number_of_packets == 3
    assert result.actual_length == 5


async def test_over_tcp_urbs_go_out_at_once_or_in_batches() -> None:
    # On a real socket a lone URB is written at once (flush), and URBs posted together
    # leave through the writer; either way each gets its own answer, in any order.
    server = FakeServer([disk()])
    with trio.fail_after(10):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, server.serve, listeners)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream, open_remote_device(stream, "1-2") as remote:
                assert len(await remote.transfer_in(1, 64)) == 4
                urbs = [await remote.post(1, Direction.IN, 64) for _ in range(20)]
                results = [await urb.wait() for urb in urbs]
                assert all(len(result.data) == 4 for result in results)
                assert remote.in_flight == 0
            nursery.cancel_scope.cancel()
    submits = [m for m in server.received if isinstance(m, CmdSubmit) and m.ep == 1]
    assert len(submits) == 21


async def _fail(exc: Exception) -> None:
    raise exc  # at once: every task of the batch fails before any is cancelled


async def _together(*failures: Exception) -> None:
    with collapse_ours():
        async with trio.open_nursery() as nursery:
            for exc in failures:
                nursery.start_soon(_fail, exc)


async def test_a_connection_end_and_the_failures_it_caused_are_one_error() -> None:
    # The bridge's tasks fail together when a served device is pulled out: the connection
    # closes and each pump sees its URBs end -ENODEV. One error comes out, the cause.
    gone_in = DeviceGone(-19, "endpoint 0x81: the device is gone")
    gone_out = DeviceGone(-19, "endpoint 0x02: the device is gone")
    closed = TransportError("the server closed the connection")
    with pytest.raises(TransportError, match="closed"):
        await _together(gone_in, closed, gone_out)
    # Anything not ours stays a group: it is a bug to be seen whole.
    with pytest.raises(BaseExceptionGroup):
        await _together(TransportError("gone"), ValueError("a bug"))
