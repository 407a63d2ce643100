"""URBs through the server to fake devices: transfers, standard requests, unlinks, unplug."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest
import trio
import trio.testing

from tests.server.harness import DISK_IN, DISK_OUT, KEYS_IN, RawClient, bed, disk, keyboard
from tests.usb.vectors import MASS_STORAGE_CONFIG, MASS_STORAGE_DEVICE
from usbip_gadget._errors import DeviceGone, ImportRefused, Stall, TransportError, UsbipTimeout
from usbip_gadget.client import enumerate_device
from usbip_gadget.protocol import (
    CmdSubmit,
    CmdUnlink,
    Direction,
    IsoPacket,
    RetSubmit,
    RetUnlink,
    TransferFlags,
)
from usbip_gadget.server import ServeOptions
from usbip_gadget.testing import STALL_MARK, FakeDevice, Reply
from usbip_gadget.usb import DescriptorType, Request, SetupPacket

pytestmark = pytest.mark.timeout(30)

DEVID = (1 << 16) | 2
ECONNRESET = -errno.ECONNRESET


def cmd_in(seqnum: int, length: int = 512, ep: int = 1, *, flags: int = 0) -> CmdSubmit:
    return CmdSubmit(seqnum, DEVID, Direction.IN, ep, length, flags | TransferFlags.DIR_IN)


async def until(device: FakeDevice, condition: Callable[[], bool]) -> None:
    """Wait for the device model to reach ``condition`` (it changes in worker threads)."""
    assert await trio.to_thread.run_sync(device.wait_for, condition, 5.0)


# ---------------------------------------------------------------- control


async def test_enumeration_through_the_server() -> None:
    d = disk()
    async with bed(d) as b:
        with trio.fail_after(10):
            async with b.imported("1-1") as remote:
                snapshot = await enumerate_device(remote, timeout=5)
                short = SetupPacket.get_descriptor(DescriptorType.DEVICE, 0, 64)
                assert await remote.control(short) == MASS_STORAGE_DEVICE  # a short IN stage
    assert snapshot.device_raw == MASS_STORAGE_DEVICE
    assert snapshot.configurations_raw == (MASS_STORAGE_CONFIG,)
    assert snapshot.strings == {0x0409: {1: "Acme", 2: "Disk", 3: "0001"}}
    assert snapshot.device_qualifier_raw is None  # the device stalled it


async def test_control_requests_reach_the_device_and_stalls_come_back() -> None:
    d = disk()

    def vendor(setup: SetupPacket, data: bytes) -> bytes | Reply:
        if setup.b_request == 0xFE:  # GET_MAX_LUN
            return b"\x00"
        if setup.b_request == 0x01:
            return b"\x2a" * 100
        return b"" if setup.b_request == 0x02 else Reply.STALL

    d.on_control = vendor
    async with bed(d) as b:
        with trio.fail_after(5):
            async with b.imported("1-1") as remote:
                assert await remote.control(SetupPacket(0xA1, 0xFE, 0, 0, 1)) == b"\x00"
                assert await remote.control(SetupPacket(0xC0, 0x01, 0, 0, 4)) == b"\x2a" * 4
                await remote.control(SetupPacket(0x40, 0x02, 7, 0, 3), b"abc")
                with pytest.raises(Stall):
                    await remote.control(SetupPacket(0xC0, 0x03, 0, 0, 1))
                assert await remote.control(SetupPacket(0xC0, 0x01, 0, 0, 1)) == b"\x2a"
    assert (SetupPacket(0x40, 0x02, 7, 0, 3), b"abc") in d.controls


@pytest.mark.parametrize(
    ("setup", "record"),
    [
        (SetupPacket.set_configuration(1), ("set_configuration", 1)),
        (SetupPacket.set_interface(0, 0), ("set_interface", 0, 0)),
        (SetupPacket.clear_feature_halt(DISK_IN), ("clear_halt", DISK_IN)),
        (SetupPacket(0x23, Request.SET_FEATURE, 4, 1, 0), ("reset",)),
    ],
)
async def test_standard_requests_go_through_the_usb_stack(
    setup: SetupPacket, record: tuple[object, ...]
) -> None:
    d = disk()
    async with bed(d) as b:
        with trio.fail_after(5):
            async with b.imported("1-1") as remote:
                await remote.control(setup)
    assert d.requests == [record]
    assert all(sent != setup for sent, _ in d.controls)  # never as a raw control transfer


async def test_a_refused_standard_request_completes_with_its_status() -> None:
    d = disk()
    async with bed(d) as b:
        with trio.fail_after(5):
            async with b.imported("1-1") as remote:
                setup = SetupPacket.set_interface(0, 5).pack()  # no alternate setting 5
                result = await remote.submit(0, Direction.OUT, setup=setup, check=False)
                assert result.status == -errno.EINVAL
                assert len(await remote.control(SetupPacket.get_descriptor(1, 0, 18))) == 18
    assert d.requests == []


async def test_a_control_urb_that_disagrees_with_its_setup_is_refused() -> None:
    async with bed(disk()) as b:
        with trio.fail_after(5):
            async with b.imported("1-1") as remote:
                setup = SetupPacket.get_descriptor(DescriptorType.DEVICE, 0, 18).pack()
                result = await remote.submit(0, Direction.IN, 8, setup=setup, check=False)
                assert result.status == -errno.EINVAL


# ---------------------------------------------------------------- bulk and interrupt


async def test_bulk_in_ends_at_a_short_packet_or_when_full() -> None:
    d = disk()
    async with bed(d) as b:
        with trio.fail_after(5):
            async with b.imported("1-1") as remote:
                d.send_in(DISK_IN, b"a" * 1000)
                assert await remote.transfer_in(1, 4096) == b"a" * 1000
                d.send_in(DISK_IN, b"b" * 1024)
                assert await remote.transfer_in(1, 1024) == b"b" * 1024
                # A zero-length packet ends a transfer; what follows is the next one's.
                d.send_in(DISK_IN, b"c" * 1024, zlp=True)
                d.send_in(DISK_IN, b"d" * 10)
                assert await remote.transfer_in(1, 4096) == b"c" * 1024
                assert await remote.transfer_in(1, 4096) == b"d" * 10


async def test_a_long_or_slow_transfer_is_one_urb() -> None:
    d = disk()
    options = ServeOptions(slice_timeout=0.02, chunk=1024)  # 3 chunks, several slices
    async with bed(d, options=options) as b:
        with trio.fail_after(5):
            async with b.imported("1-1") as remote:
                waiting = await remote.post(1, Direction.IN, 8192)
                for part in (b"e" * 1024, b"f" * 1536):  # whole packets: not the end
                    d.send_in(DISK_IN, part)
                    await trio.sleep(0.06)  # longer than a slice: the URB keeps waiting
                    assert not waiting.settled
                d.send_in(DISK_IN, b"g" * 100)
                result = await waiting.wait()
    assert result.data == b"e" * 1024 + b"f" * 1536 + b"g" * 100
    assert d.pending_in(DISK_IN) == 0


async def test_bulk_out_packets_and_zero_length_packets() -> None:
    d = disk()
    async with bed(d, options=ServeOptions(slice_timeout=0.02, chunk=512)) as b:
        with trio.fail_after(5):
            async with b.imported("1-1") as remote:
                assert await remote.transfer_out(2, b"x" * 1000) == 1000
                assert await remote.transfer_out(2, b"y" * 1024, zero_packet=True) == 1024
                assert await remote.transfer_out(2, b"z" * 1024) == 1024
                assert await remote.transfer_out(2, b"") == 0
    sizes = [len(p) for p in d.out_packets[DISK_OUT]]
    assert sizes == [512, 488, 512, 512, 0, 512, 512, 0]
    assert b"".join(d.out_packets[DISK_OUT]) == b"x" * 1000 + b"y" * 1024 + b"z" * 1024


async def test_bulk_out_waits_while_the_device_naks() -> None:
    d = disk()
    d.hold_out(DISK_OUT, 1)  # takes one packet, then NAKs
    async with bed(d) as b:
        with trio.fail_after(5):
            async with b.imported("1-1") as remote:
                urb = await remote.post(2, Direction.OUT, data=b"w" * 1500)
                await until(d, lambda: len(d.out_packets.get(DISK_OUT, [])) == 1)
                await trio.sleep(0.1)
                assert not urb.settled
                d.hold_out(DISK_OUT, None)
                assert (await urb.wait()).actual_length == 1500
    assert [len(p) for p in d.out_packets[DISK_OUT]] == [512, 512, 476]


async def test_interrupt_in_reports_in_order() -> None:
    k = keyboard()
    reports = [bytes([0, 0, key, 0, 0, 0, 0, 0]) for key in (4, 5, 6)]
    async with bed(k) as b:
        with trio.fail_after(5):
            async with b.imported("1-2") as remote:
                urbs = [await remote.post(1, Direction.IN, 8) for _ in reports]
                for report in reports:
                    k.send_in(KEYS_IN, report)
                assert [(await u.wait()).data for u in urbs] == reports


async def test_a_stall_halts_the_endpoint_until_clear_halt() -> None:
    d = disk()
    async with bed(d) as b:
        with trio.fail_after(5):
            async with b.imported("1-1") as remote:
                d.send_in(DISK_IN, b"x" * 100)
                d.feed(DISK_IN, STALL_MARK)
                assert await remote.transfer_in(1, 512) == b"x" * 100
                for _ in range(2):
                    with pytest.raises(Stall):
                        await remote.transfer_in(1, 512)
                await remote.control(SetupPacket.clear_feature_halt(DISK_IN))
                d.send_in(DISK_IN, b"y")
                assert await remote.transfer_in(1, 512) == b"y"
                d.stall(DISK_OUT)
                with pytest.raises(Stall):
                    await remote.transfer_out(2, b"cbw")
    assert d.requests == [("clear_halt", DISK_IN)]


async def test_babble_short_not_ok_and_data_with_an_error() -> None:
    d = disk()
    async with bed(d) as b:
        with trio.fail_after(5):
            async with b.imported("1-1") as remote:
                d.feed(DISK_IN, b"z" * 512)  # more than the URB has room for
                result = await remote.submit(1, Direction.IN, 100, check=False)
                assert (result.status, result.data) == (-errno.EOVERFLOW, b"")
                d.feed(DISK_IN, b"a" * 512, b"b" * 512)
                result = await remote.submit(1, Direction.IN, 600, check=False)
                assert (result.status, result.data) == (-errno.EOVERFLOW, b"a" * 512)
                d.send_in(DISK_IN, b"c" * 100)
                flags = TransferFlags.SHORT_NOT_OK
                result = await remote.submit(1, Direction.IN, 512, flags=flags, check=False)
                assert (result.status, result.data) == (-errno.EREMOTEIO, b"c" * 100)


async def test_many_urbs_in_flight_on_several_endpoints() -> None:
    d = disk()
    async with bed(d) as b:
        with trio.fail_after(5):
            async with b.imported("1-1") as remote:
                urbs = [await remote.post(1, Direction.IN, 512) for _ in range(40)]
                # The OUT endpoint is not stuck behind 40 waiting IN URBs.
                assert await remote.transfer_out(2, b"cbw" * 10) == 30
                assert remote.in_flight == 40
                for i in range(40):
                    d.send_in(DISK_IN, bytes([i]) * (i + 1))
                results = [await u.wait() for u in urbs]
    assert [r.data for r in results] == [bytes([i]) * (i + 1) for i in range(40)]


async def test_isochronous_urbs_are_answered_unsupported() -> None:
    async with bed(disk()) as b:
        with trio.fail_after(5):
            raw = RawClient(b.connect())
            await raw.import_("1-1")
            packets = (IsoPacket(0, 8), IsoPacket(8, 8))
            iso = CmdSubmit(1, DEVID, Direction.IN, 1, 16, 0, number_of_packets=2,
                            iso_packets=packets)  # fmt: skip
            await raw.send(iso)
            reply = await raw.receive()
    status = -errno.EOPNOTSUPP
    expected = tuple(IsoPacket(p.offset, p.length, 0, status) for p in packets)
    assert reply == RetSubmit(1, status, 0, b"", 0, 2, 2, expected)
    assert b.lines("isochronous") == ["1-1: isochronous URBs are answered -EOPNOTSUPP"]


# ---------------------------------------------------------------- unlink


async def test_unlink_answers_follow_the_spec() -> None:
    d = disk()
    async with bed(d) as b:
        with trio.fail_after(5):
            raw = RawClient(b.connect())
            await raw.import_("1-1")
            await raw.send(cmd_in(1))  # waits for data on the device
            await trio.testing.wait_all_tasks_blocked()
            await raw.send(cmd_in(2))  # queued behind it
            await raw.send(CmdUnlink(3, DEVID, 2))
            assert await raw.receive() == RetUnlink(3, ECONNRESET)
            await raw.send(CmdUnlink(4, DEVID, 1))  # stopped at the end of its slice
            assert await raw.receive() == RetUnlink(4, ECONNRESET)
            d.send_in(DISK_IN, b"ok")  # went to no unlinked URB: the next one has it
            await raw.send(cmd_in(5))
            assert await raw.receive() == RetSubmit(5, 0, 2, b"ok")
            await raw.send(CmdUnlink(6, DEVID, 5))  # already answered
            assert await raw.receive() == RetUnlink(6, 0)
            await raw.send(CmdUnlink(7, DEVID, 999))  # never seen
            assert await raw.receive() == RetUnlink(7, 0)
    assert d.pending_in(DISK_IN) == 0


async def test_an_unlinked_urb_that_took_data_returns_it() -> None:
    d = disk()
    async with bed(d) as b:
        with trio.fail_after(5):
            raw = RawClient(b.connect())
            await raw.import_("1-1")
            await raw.send(cmd_in(1, 4096))
            d.send_in(DISK_IN, b"p" * 1024)  # two full packets: the transfer is not over
            await until(d, lambda: d.pending_in(DISK_IN) == 0)
            await raw.send(CmdUnlink(2, DEVID, 1))
            assert await raw.receive() == RetSubmit(1, ECONNRESET, 1024, b"p" * 1024)
            assert await raw.receive() == RetUnlink(2, 0)


async def test_a_urb_completing_as_its_unlink_arrives_keeps_its_data() -> None:
    d = disk()
    async with bed(d, options=ServeOptions(slice_timeout=5)) as b:
        with trio.fail_after(5):
            raw = RawClient(b.connect())
            await raw.import_("1-1")
            await raw.send(cmd_in(1))
            await trio.testing.wait_all_tasks_blocked()
            await raw.send(CmdUnlink(2, DEVID, 1))
            d.send_in(DISK_IN, b"just in time")
            assert await raw.receive() == RetSubmit(1, 0, 12, b"just in time")
            assert await raw.receive() == RetUnlink(2, 0)


async def test_a_running_control_urb_is_unlinked_at_once() -> None:
    d = disk()
    d.on_control = lambda setup, data: Reply.HOLD if setup.b_request == 0x77 else b"\x01"
    async with bed(d, options=ServeOptions(control_timeout=1.0)) as b:
        with trio.fail_after(5):
            raw = RawClient(b.connect())
            await raw.import_("1-1")
            held = SetupPacket(0xC0, 0x77, 0, 0, 1).pack()
            await raw.send(CmdSubmit(1, DEVID, Direction.IN, 0, 1, 0x200, held))
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            await raw.send(CmdUnlink(2, DEVID, 1))
            assert await raw.receive() == RetUnlink(2, ECONNRESET)
            assert trio.current_time() - start < 0.5
            after = SetupPacket(0xC0, 0x78, 0, 0, 1).pack()
            await raw.send(CmdSubmit(3, DEVID, Direction.IN, 0, 1, 0x200, after))
            assert await raw.receive() == RetSubmit(3, 0, 1, b"\x01")  # after the held one


async def test_client_timeout_unlinks_and_the_data_goes_to_the_next_urb() -> None:
    d = disk()
    async with bed(d) as b:
        with trio.fail_after(5):
            async with b.imported("1-1") as remote:
                with pytest.raises(UsbipTimeout):
                    await remote.transfer_in(1, 512, timeout=0.1)
                d.send_in(DISK_IN, b"late")
                assert await remote.transfer_in(1, 512) == b"late"


# ---------------------------------------------------------------- unplug


async def test_unplug_answers_enodev_closes_the_connection_and_refuses_the_next_import() -> None:
    k, d = keyboard(), disk()
    async with bed(k, d) as b:
        with trio.fail_after(5):
            raw = RawClient(b.connect())
            await raw.import_("1-2")
            await raw.send(cmd_in(1, 8))
            await raw.send(cmd_in(2, 8))
            await trio.testing.wait_all_tasks_blocked()
            k.unplug()
            replies = [await raw.receive(), await raw.receive()]
            assert await raw.receive() is None  # then the connection is closed
            await b.done["client"].wait()
            with pytest.raises(ImportRefused, match="no such device"):
                async with b.imported("1-2", "again"):
                    pass
            async with b.imported("1-1", "other") as other:  # the server carries on
                d.send_in(DISK_IN, b"fine")
                assert await other.transfer_in(1, 512) == b"fine"
    assert replies == [RetSubmit(1, -errno.ENODEV), RetSubmit(2, -errno.ENODEV)]
    assert b.lines("released 1-2") == ["released 1-2 (1234:abcd) from client: device unplugged"]
    assert not k.claimed


async def test_unplug_seen_by_our_client() -> None:
    k = keyboard()
    async with bed(k) as b:
        with trio.fail_after(5):
            async with b.imported("1-2") as remote:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_unplug_when_blocked, k)
                    with pytest.raises(DeviceGone):
                        await remote.transfer_in(1, 8)
                await remote.closed.wait()
                with pytest.raises(TransportError):
                    await remote.transfer_in(1, 8)


async def test_an_idle_device_pulled_out_ends_its_session() -> None:
    """Nothing in flight, so no transfer fails: the presence check ends the session."""
    k = keyboard()
    async with bed(k) as b:
        with trio.fail_after(5):
            async with b.imported("1-2") as remote:
                await trio.testing.wait_all_tasks_blocked()
                k.unplug()
                await remote.closed.wait()
            await b.done["client"].wait()
    assert b.lines("released 1-2") == ["released 1-2 (1234:abcd) from client: device unplugged"]
    assert not k.claimed


async def _unplug_when_blocked(device: FakeDevice) -> None:
    await trio.testing.wait_all_tasks_blocked()
    device.unplug()


async def test_a_urb_completing_after_the_client_left_is_dropped_quietly() -> None:
    k = keyboard()
    async with bed(k, options=ServeOptions(slice_timeout=5)) as b:
        with trio.fail_after(5):
            raw = RawClient(b.connect())
            await raw.import_("1-2")
            await raw.send(cmd_in(1, 8))
            await trio.testing.wait_all_tasks_blocked()
            await raw.stream.aclose()
            await trio.testing.wait_all_tasks_blocked()  # the server has seen the end
            assert not b.done["client"].is_set()  # it waits for the read in progress
            k.send_in(KEYS_IN, bytes(8))  # which completes now, with nobody to answer
            await b.done["client"].wait()
    assert b.lines("released") == ["released 1-2 (1234:abcd) from client: closed by the client"]
    assert k.pending_in(KEYS_IN) == 0
