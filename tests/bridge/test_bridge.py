"""A real ``Bridge`` between a ``FakeGadget`` (the host's side) and a packet-level remote device.

The remote (``usbip_gadget.testing.FakeRemote``) is served over USB/IP on in-memory streams and
completes URBs as a host controller would, so what the host reads through the bridge can be
compared with what it would read from the device plugged in directly.
"""

from __future__ import annotations

import errno
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import pytest
import trio
import trio.testing

from tests.bridge.fake_disk import (
    BLOCK,
    FAILED,
    PASSED,
    READ_10,
    TEST_UNIT_READY,
    WRITE_10,
    BulkOnlyDisk,
    Status,
    cbw,
    parse_csw,
    read10,
    write10,
)
from tests.calls import Call
from tests.client.fakes import disk
from tests.usb.vectors import MASS_STORAGE_CONFIG
from usbip_gadget import RemoteProtocolError, TransportError
from usbip_gadget.bridge import CONTROL_TIMEOUT, DEFAULT_DEPTH, Bridge, BulkOnlyPlan
from usbip_gadget.client import RemoteDevice, open_remote_device
from usbip_gadget.protocol import CmdSubmit, RetSubmit, RetUnlink
from usbip_gadget.testing import (
    DEFAULT_HOST_TIMEOUT,
    FakeGadget,
    FakeHost,
    FakeRemote,
    HostBabble,
    HostStall,
    Reply,
    host_reads,
    packets_of,
)
from usbip_gadget.usb import DeviceSnapshot, RequestType, SetupPacket, Speed

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")
ECONNRESET = -errno.ECONNRESET
TIMEOUT = 10

IN_VENDOR_DEVICE = RequestType.IN | RequestType.VENDOR | RequestType.DEVICE
OUT_VENDOR_DEVICE = RequestType.OUT | RequestType.VENDOR | RequestType.DEVICE
IN_CLASS_INTERFACE = RequestType.IN | RequestType.CLASS | RequestType.INTERFACE
OUT_CLASS_INTERFACE = RequestType.OUT | RequestType.CLASS | RequestType.INTERFACE
IN_VENDOR_ENDPOINT = RequestType.IN | RequestType.VENDOR | RequestType.ENDPOINT

# A full-speed vendor device: interfaces 3 and 5 (the host sees 0 and 1), configuration 2.
VENDOR_DEVICE = bytes.fromhex("120100020000004034127856000100000001")
VENDOR_CONFIG = bytes.fromhex(
    "090230000202008032"  # 2 interfaces, bConfigurationValue 2
    "0904030002ff000000"  # interface 3
    "07058102400000"  # bulk IN 0x81, 64 bytes
    "07050202400000"  # bulk OUT 0x02, 64 bytes
    "0904050001ff000000"  # interface 5
    "0705830308000a"  # interrupt IN 0x83, 8 bytes
)
BULK_IN, BULK_OUT, INTERRUPT_IN = 0x81, 0x02, 0x83


def lengths(cmds: Sequence[CmdSubmit]) -> list[int]:
    """transfer_buffer_length of each command."""
    return [cmd.transfer_buffer_length for cmd in cmds]


def vendor_remote() -> FakeRemote:
    snapshot = DeviceSnapshot.from_raw("1-1", Speed.FULL, VENDOR_DEVICE, (VENDOR_CONFIG,))
    return FakeRemote(snapshot)


def disk_remote(image: bytearray) -> tuple[FakeRemote, BulkOnlyDisk]:
    """A flash drive: bulk IN 0x81 and bulk OUT 0x02 of 512 bytes, Bulk-Only Transport."""
    raw = disk().device_raw
    snapshot = DeviceSnapshot.from_raw("1-2", Speed.HIGH, raw, (MASS_STORAGE_CONFIG,))
    remote = FakeRemote(snapshot, busid="1-2")
    return remote, BulkOnlyDisk(remote, image)


def disk_image(blocks: int = 64) -> bytearray:
    return bytearray(random.Random(blocks).randbytes(blocks * BLOCK))


@dataclass
class Rig:
    remote: FakeRemote
    device: RemoteDevice
    gadget: FakeGadget
    bridge: Bridge
    log: list[str]

    @property
    def host(self) -> FakeHost:
        return self.gadget.host

    async def configure(self) -> None:
        """The host's SET_CONFIGURATION; returns once the remote has received its own."""
        count = len(self.remote.set_configurations)
        value = self.gadget.configuration.b_configuration_value
        await self.host.control(SetupPacket.set_configuration(value))
        await self.remote.wait_until(lambda: len(self.remote.set_configurations) > count)

    async def pumping(self, *addresses: int, depth: int = DEFAULT_DEPTH) -> None:
        """Wait until ``depth`` IN URBs are queued on each of ``addresses``."""
        remote = self.remote
        await remote.wait_until(lambda: all(len(remote.queued(a)) == depth for a in addresses))


@asynccontextmanager
async def bridged(
    remote: FakeRemote,
    *,
    depth: int = DEFAULT_DEPTH,
    run: bool = True,
    configure: bool = True,
    lockstep: bool = False,
    bulk_urbs: str = "exact",
    aio: bool = True,
    allow_dfu: bool = False,
) -> AsyncIterator[Rig]:
    """``remote`` imported over memory streams and bridged to a ``FakeGadget``.

    With ``run`` the bridge runs in the background and the host plugs in (and configures
    the device with ``configure``); without, the test runs ``rig.bridge.run()`` itself.
    ``lockstep``: a send waits until the server reads it (see ``FakeRemote.pause``). The
    bridge is cancelled once everything is idle, so that no send is cut in half.
    """
    pair = trio.testing.lockstep_stream_pair if lockstep else trio.testing.memory_stream_pair
    client_stream, server_stream = pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(remote.serve, server_stream)
        async with open_remote_device(client_stream, remote.busid) as device:
            gadget = FakeGadget(remote.snapshot, aio=aio)
            log: list[str] = []
            bridge = Bridge(
                device, gadget, gadget.configuration, depth=depth, bulk_urbs=bulk_urbs,
                log=log.append, allow_dfu=allow_dfu,
            )  # fmt: skip
            rig = Rig(remote, device, gadget, bridge, log)
            async with trio.open_nursery() as bridge_nursery:
                running = Call(bridge_nursery, bridge.run) if run else None
                if run:
                    gadget.host.connect()
                    if configure:
                        await rig.configure()
                yield rig
                await trio.testing.wait_all_tasks_blocked()
                if running is not None and running.done:
                    await running.result()  # the bridge ended on its own: that is its error
                bridge_nursery.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
    assert remote.errors == []


# -- 1. control requests ---------------------------------------------------------------


async def test_in_request_returns_the_remote_data() -> None:
    remote = vendor_remote()
    remote.on_control = lambda setup, data: b"remote data"
    setup = SetupPacket(IN_VENDOR_DEVICE, 0x01, 0x1234, 0x5678, 64)
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            assert await rig.host.control(setup) == b"remote data"
            short = SetupPacket(IN_VENDOR_DEVICE, 0x01, 0, 0, 4)
            assert await rig.host.control(short) == b"remo"
    assert remote.controls[-2:] == [(setup, b""), (short, b"")]


async def test_out_request_carries_its_data_to_the_remote() -> None:
    remote = vendor_remote()
    remote.on_control = lambda setup, data: b""
    setup = SetupPacket(OUT_VENDOR_DEVICE, 0x02, 0x0007, 0, 5)
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            assert await rig.host.control(setup, b"\x01\x02\x03\x04\x05") == b""
            await remote.wait_until(lambda: remote.controls[-1][0] == setup)
    assert remote.controls[-1] == (setup, b"\x01\x02\x03\x04\x05")


@pytest.mark.parametrize(("answer", "stalls"), [(b"", False), (Reply.STALL, True)])
async def test_zero_length_out_is_answered_after_the_remote(
    answer: bytes | Reply, stalls: bool
) -> None:
    remote = vendor_remote()
    remote.on_control = lambda setup, data: Reply.HOLD
    setup = SetupPacket(OUT_VENDOR_DEVICE, 0x03, 1, 0, 0)
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig, trio.open_nursery() as nursery:
            call = Call(nursery, lambda: rig.host.control(setup))
            await remote.wait_until(lambda: bool(remote.held_controls))
            await trio.testing.wait_all_tasks_blocked()
            assert not call.done  # the status stage waits for the device
            (seqnum,) = remote.held_controls
            remote.answer_control(seqnum, answer)
            if stalls:
                with pytest.raises(HostStall):
                    await call.result()
            else:
                assert await call.result() == b""
    assert remote.controls[-1] == (setup, b"")


async def test_remote_stall_stalls_the_host_request() -> None:
    remote = vendor_remote()
    remote.on_control = lambda setup, data: Reply.STALL
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            with pytest.raises(HostStall):
                await rig.host.control(SetupPacket(IN_VENDOR_DEVICE, 0x04, 0, 0, 8))
            # The next request is answered normally: ep0 is not left halted.
            remote.on_control = lambda setup, data: b"ok"
            assert await rig.host.control(SetupPacket(IN_VENDOR_DEVICE, 0x05, 0, 0, 8)) == b"ok"
    assert any("failed on the device" in line for line in rig.log)


async def test_out_data_request_stalled_by_the_remote_is_logged() -> None:
    # f_fs has acknowledged the data stage before the bridge sees the data: the host cannot
    # be told, so the bridge says so in its log.
    remote = vendor_remote()
    remote.on_control = lambda setup, data: Reply.STALL
    setup = SetupPacket(OUT_VENDOR_DEVICE, 0x06, 0, 0, 2)
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            assert await rig.host.control(setup, b"hi") == b""
            await remote.wait_until(lambda: remote.controls[-1][0] == setup)
            await trio.testing.wait_all_tasks_blocked()
    assert any(setup.pack().hex() in line for line in rig.log)


async def test_interface_requests_reach_the_remote_interface_numbers() -> None:
    remote = vendor_remote()
    remote.on_control = lambda setup, data: bytes([setup.w_index & 0xFF])
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            # The host numbers the interfaces 0 and 1; the device calls them 3 and 5.
            for host_number, remote_number in [(0, 3), (1, 5)]:
                setup = SetupPacket(IN_CLASS_INTERFACE, 0x01, 0x0100, host_number, 1)
                assert await rig.host.control(setup) == bytes([remote_number])
                assert remote.controls[-1][0] == SetupPacket(
                    IN_CLASS_INTERFACE, 0x01, 0x0100, remote_number, 1
                )
            endpoint = SetupPacket(IN_VENDOR_ENDPOINT, 0x01, 0, INTERRUPT_IN, 1)
            assert await rig.host.control(endpoint) == bytes([INTERRUPT_IN])


async def test_unanswered_request_is_stalled_before_the_host_times_out(
    autojump_clock: trio.abc.Clock,
) -> None:
    remote = vendor_remote()
    remote.on_control = lambda setup, data: Reply.HOLD
    async with bridged(remote) as rig:
        start = trio.current_time()
        with pytest.raises(HostStall):
            await rig.host.control(SetupPacket(IN_VENDOR_DEVICE, 0x07, 0, 0, 8))
        elapsed = trio.current_time() - start
        (unlink,) = remote.unlinks()
    assert elapsed == pytest.approx(CONTROL_TIMEOUT)
    assert elapsed < DEFAULT_HOST_TIMEOUT
    (held,) = [c for c in remote.submits(0) if SetupPacket.parse(c.setup).b_request == 0x07]
    assert unlink.unlink_seqnum == held.seqnum
    assert remote.held_controls == {}


# -- 2. SET_CONFIGURATION ----------------------------------------------------------------


async def test_set_configuration_configures_the_remote_and_starts_the_pumps() -> None:
    remote = vendor_remote()
    with trio.fail_after(TIMEOUT):
        async with bridged(remote, configure=False) as rig:
            await trio.testing.wait_all_tasks_blocked()
            assert remote.submits() == []  # nothing moves before the host configures
            await rig.host.control(SetupPacket.set_configuration(2))
            await rig.pumping(BULK_IN, INTERRUPT_IN)
            await trio.testing.wait_all_tasks_blocked()
    assert remote.set_configurations == [2]
    first = remote.submits()[0]
    assert (first.ep, first.setup) == (0, SetupPacket.set_configuration(2).pack())
    assert lengths(remote.submits(BULK_IN)) == [64] * DEFAULT_DEPTH
    assert lengths(remote.submits(INTERRUPT_IN)) == [8] * DEFAULT_DEPTH
    assert remote.submits(BULK_OUT) == []  # OUT URBs wait for the host's data


# -- 3. IN transfers ---------------------------------------------------------------------


def _transfers(seed: int) -> tuple[list[bytes], list[int]]:
    """Random transfers, each ended by a short packet or a ZLP, and random read lengths."""
    rng = random.Random(seed)
    packets: list[bytes] = []
    for _ in range(12):
        size = rng.choice([0, 1, 63, 64, 65, 128, 130, 192, 300])
        packets += packets_of(rng.randbytes(size), 64, zlp=True)
    reads = [rng.choice([64, 128, 192, 512]) for _ in range(len(packets))]
    return packets, reads


IN_SCENARIOS = {
    "short packet": ([b"abc"], [512]),
    "whole packets and a ZLP": ([*packets_of(b"z" * 128, 64, zlp=True), b"next"], [512, 512]),
    "longer than the request": (packets_of(b"y" * 200, 64), [128, 128]),
    "zlp alone": ([b""], [64]),
    "request a packet at a time": (
        [*packets_of(b"w" * 192, 64, zlp=True), b"x" * 10, b""],
        [64, 64, 512, 512, 512],
    ),
    "babble": ([b"q" * 64], [10]),
    **{f"random {seed}": _transfers(seed) for seed in range(4)},
}


@pytest.mark.parametrize(
    ("bulk_urbs", "aio"),
    [("exact", True), ("adaptive", True), ("exact", False)],
    ids=["exact", "adaptive", "one-write-at-a-time"],
)
@pytest.mark.parametrize("settled_first", [False, True], ids=["as-read", "settled-first"])
@pytest.mark.parametrize("scenario", IN_SCENARIOS)
async def test_in_transfers_read_what_a_directly_attached_host_reads(
    scenario: str, settled_first: bool, bulk_urbs: str, aio: bool
) -> None:
    # settled-first: every URB in flight completes before the host reads, so the pump
    # coalesces the URBs that were filled exactly with what follows them into one write.
    packets, reads = IN_SCENARIOS[scenario]
    expected = host_reads(packets, 64, reads)
    remote = vendor_remote()
    with trio.fail_after(TIMEOUT):
        async with bridged(remote, bulk_urbs=bulk_urbs, aio=aio) as rig:
            remote.feed(BULK_IN, *packets)
            if settled_first:
                await trio.testing.wait_all_tasks_blocked()
            got: list[tuple[int, bytes]] = []
            for length, _ in expected:
                try:
                    got.append((length, await rig.host.transfer_in(BULK_IN, length)))
                except HostBabble:
                    got.append((length, b"babble"))
    assert got == expected
    assert not remote.endpoint(BULK_IN).packets


async def test_interrupt_in_keeps_reports_apart() -> None:
    remote = vendor_remote()
    reports = [bytes([i]) * 8 for i in range(5)]
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            remote.feed(INTERRUPT_IN, *reports)
            got = [await rig.host.transfer_in(INTERRUPT_IN, 8) for _ in reports]
    assert got == reports


@pytest.mark.parametrize("depth", [1, 3])
async def test_read_ahead_is_bounded_by_the_depth(depth: int) -> None:
    remote = vendor_remote()
    data = bytes(range(256)) * 4 + b"end"
    with trio.fail_after(TIMEOUT):
        async with bridged(remote, depth=depth) as rig:
            await rig.pumping(BULK_IN, INTERRUPT_IN, depth=depth)
            await trio.testing.wait_all_tasks_blocked()
            assert len(remote.queued(BULK_IN)) == depth  # and no more while idle
            remote.send_in(BULK_IN, data)
            assert await rig.host.transfer_in(BULK_IN, 2048) == data
            await rig.pumping(BULK_IN, depth=depth)
    assert remote.endpoint(BULK_IN).peak == depth
    assert remote.endpoint(INTERRUPT_IN).peak == depth
    assert len(remote.submits(BULK_IN)) == len(packets_of(data, 64)) + depth


# -- 4. OUT transfers --------------------------------------------------------------------


async def test_out_transfers_arrive_as_urbs_in_order() -> None:
    remote = vendor_remote()
    transfers = [
        (b"hello", False),
        (b"p" * 64, False),
        (bytes(range(200)), False),
        (b"", False),
        (b"r" * 128, True),
    ]
    expected = [b"hello", b"p" * 64, *packets_of(bytes(range(200)), 64), b"", b"r" * 64]
    expected += [b"r" * 64, b""]
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            for data, zlp in transfers:
                await rig.host.transfer_out(BULK_OUT, data, zero_packet=zlp)
            await remote.wait_until(lambda: len(remote.out_urbs[BULK_OUT]) == len(expected))
    urbs = remote.out_urbs[BULK_OUT]
    assert urbs == expected  # one URB per packet, in order, ZLPs as zero-length URBs
    assert b"".join(urbs) == b"".join(data for data, _ in transfers)
    assert lengths(remote.submits(BULK_OUT)) == [len(urb) for urb in expected]


# -- 5. mass storage ---------------------------------------------------------------------


async def _command(host: FakeHost, tag: int, cdb: bytes, length: int, *, data_in: bool) -> None:
    await host.transfer_out(BULK_OUT, cbw(tag, length, cdb, data_in=data_in))


async def test_mass_storage_reads_and_writes_the_disk() -> None:
    image = disk_image()
    original = bytes(image)
    remote, drive = disk_remote(image)
    new = bytes(range(256)) * 4
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            host = rig.host
            await trio.testing.wait_all_tasks_blocked()
            assert remote.submits(BULK_IN) == []  # no command, nothing to read ahead
            await _command(host, 1, read10(3, 8), 4096, data_in=True)
            assert await host.transfer_in(BULK_IN, 4096) == original[3 * BLOCK : 11 * BLOCK]
            assert parse_csw(await host.transfer_in(BULK_IN, 13)) == Status(1, 0, PASSED)
            await _command(host, 2, write10(10, 2), 1024, data_in=False)
            await host.transfer_out(BULK_OUT, new)
            assert parse_csw(await host.transfer_in(BULK_IN, 13)) == Status(2, 0, PASSED)
            await _command(host, 3, read10(10, 2), 1024, data_in=True)
            assert await host.transfer_in(BULK_IN, 1024) == new
            assert parse_csw(await host.transfer_in(BULK_IN, 13)) == Status(3, 0, PASSED)
            await _command(host, 4, bytes(6), 0, data_in=False)  # TEST UNIT READY
            assert parse_csw(await host.transfer_in(BULK_IN, 13)) == Status(4, 0, PASSED)
    assert image[10 * BLOCK : 12 * BLOCK] == new
    assert image[: 10 * BLOCK] == original[: 10 * BLOCK]
    assert [c.opcode for c in drive.commands] == [READ_10, WRITE_10, READ_10, TEST_UNIT_READY]
    # One URB per stage: the data moves in one URB, not one per packet.
    assert lengths(remote.submits(BULK_IN)) == [4096, 512, 512, 1024, 512, 512]
    assert lengths(remote.submits(BULK_OUT)) == [31, 31, 1024, 31, 31]


async def test_mass_storage_data_stage_survives_its_cbw_completing_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The CBW's OUT URB may complete, and the OUT pump see it, before the IN pump has taken
    # the data stage the CBW announced: an OUT completion says nothing about IN data, so the
    # plan hears of IN completions only (on the bed, a short "IN" seen for every CBW wiped
    # the data stage and the host waited for data that was never asked for).
    told: list[tuple[int, int, int]] = []
    saw_in = BulkOnlyPlan.saw_in

    def spy(plan: BulkOnlyPlan, address: int, requested: int, received: int) -> None:
        told.append((address, requested, received))
        saw_in(plan, address, requested, received)

    monkeypatch.setattr(BulkOnlyPlan, "saw_in", spy)
    image = disk_image()
    remote, _drive = disk_remote(image)
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            for tag in range(1, 11):
                await _command(rig.host, tag, read10(tag, 8), 4096, data_in=True)
                data = await rig.host.transfer_in(BULK_IN, 4096)
                assert data == image[tag * BLOCK : (tag + 8) * BLOCK], tag
                assert parse_csw(await rig.host.transfer_in(BULK_IN, 13)) == Status(tag, 0, PASSED)
    assert told == [(BULK_IN, 4096, 4096), (BULK_IN, 512, 13)] * 10
    assert lengths(remote.submits(BULK_IN)) == [4096, 512] * 10


async def test_mass_storage_data_out_is_read_while_its_cbw_is_in_flight() -> None:
    # The CBW announces the data-out stage: the host's data is taken while the device still
    # NAKs the CBW, so the stage does not wait a round trip; the device gets both in order.
    image = disk_image()
    remote, _drive = disk_remote(image)
    block = bytes(range(256)) * 2
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            remote.hold_out = True
            await _command(rig.host, 9, write10(3, 1), BLOCK, data_in=False)
            await rig.host.transfer_out(BULK_OUT, block)  # taken although the CBW is held
            await remote.wait_until(lambda: len(remote.submits(BULK_OUT)) == 2)
            assert remote.out_urbs[BULK_OUT] == []
            remote.release_out()
            assert parse_csw(await rig.host.transfer_in(BULK_IN, 13)) == Status(9, 0, PASSED)
            # The next CBW waits for every URB before it: one in flight at a time again.
            await _command(rig.host, 10, bytes([TEST_UNIT_READY]), 0, data_in=False)
            assert parse_csw(await rig.host.transfer_in(BULK_IN, 13)) == Status(10, 0, PASSED)
    assert image[3 * BLOCK : 4 * BLOCK] == block
    assert [len(urb) for urb in remote.out_urbs[BULK_OUT]] == [31, BLOCK, 31]


async def test_mass_storage_short_data_ended_by_a_zlp() -> None:
    # Two blocks for a 4096-byte data stage: the drive ends it with a ZLP after whole
    # packets. The bridge's 4096-byte URB comes back with 1024 bytes and the host must see
    # the ZLP too, or its transfer would run on into the CSW.
    image = disk_image()
    remote, _drive = disk_remote(image)
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            await _command(rig.host, 8, read10(4, 2), 4096, data_in=True)
            assert await rig.host.transfer_in(BULK_IN, 4096) == image[4 * BLOCK : 6 * BLOCK]
            assert parse_csw(await rig.host.transfer_in(BULK_IN, 13)) == Status(8, 3072, PASSED)
    assert lengths(remote.submits(BULK_IN)) == [4096, 512]


async def test_mass_storage_queues_data_and_status_with_the_cbw() -> None:
    image = disk_image()
    remote, _drive = disk_remote(image)
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            remote.hold_out = True  # the device NAKs: the CBW's URB stays queued
            await _command(rig.host, 9, read10(0, 8), 4096, data_in=True)
            await remote.wait_until(lambda: len(remote.submits(BULK_IN)) == 2)
            (command,) = remote.submits(BULK_OUT)
            # Both IN URBs were posted without waiting for the CBW's completion.
            assert not remote.answered(command.seqnum)
            assert lengths(remote.submits(BULK_IN)) == [4096, 512]
            remote.release_out()
            assert await rig.host.transfer_in(BULK_IN, 4096) == image[: 8 * BLOCK]
            assert parse_csw(await rig.host.transfer_in(BULK_IN, 13)) == Status(9, 0, PASSED)


# -- 6. stalls ---------------------------------------------------------------------------


async def test_remote_stall_on_bulk_in_halts_the_gadget_endpoint() -> None:
    image = disk_image()
    remote, drive = disk_remote(image)
    drive.stall_next_data_in = True
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            host = rig.host
            await _command(host, 5, read10(0, 8), 4096, data_in=True)
            with pytest.raises(HostStall):
                await host.transfer_in(BULK_IN, 4096)
            assert rig.gadget.endpoint(BULK_IN).halted
            assert remote.clear_halts == [BULK_IN]  # cleared on the device before the host
            host.clear_halt(BULK_IN)
            assert parse_csw(await host.transfer_in(BULK_IN, 13)) == Status(5, 4096, FAILED)
            # The drive works on.
            await _command(host, 6, read10(1, 1), 512, data_in=True)
            assert await host.transfer_in(BULK_IN, 512) == image[BLOCK : 2 * BLOCK]
            assert parse_csw(await host.transfer_in(BULK_IN, 13)) == Status(6, 0, PASSED)
    data, status, again = remote.submits(BULK_IN)[:3]
    assert lengths([data, status, again]) == [4096, 512, 512]
    # The CSW's URB queued behind the stalled one was unlinked, and queued again.
    assert [u.unlink_seqnum for u in remote.unlinks()] == [status.seqnum]


@pytest.mark.parametrize("bulk_urbs", ["exact", "adaptive"])
async def test_remote_stall_on_bulk_out_halts_the_gadget_endpoint(bulk_urbs: str) -> None:
    # BUG (src/usbip_gadget/bridge/_pumps.py OutPump): the pump always has a gadget read
    # pending, and f_fs (like FakeEndpoint) runs one call at a time per endpoint file, so
    # OutPump.stalled's endpoint.halt() waits for the host's *next* transfer; that transfer
    # is acknowledged and sent to the device (whose halt the bridge has just cleared)
    # instead of being stalled.
    remote = vendor_remote()
    with trio.fail_after(TIMEOUT):
        async with bridged(remote, bulk_urbs=bulk_urbs) as rig:
            remote.halt(BULK_OUT)
            await rig.host.transfer_out(BULK_OUT, b"refused")  # the controller took it
            await remote.wait_until(lambda: remote.clear_halts == [BULK_OUT])
            await trio.testing.wait_all_tasks_blocked()
            assert rig.gadget.endpoint(BULK_OUT).halted
            with pytest.raises(HostStall):
                await rig.host.transfer_out(BULK_OUT, b"while halted")
            rig.host.clear_halt(BULK_OUT)
            await rig.host.transfer_out(BULK_OUT, b"accepted")
            await remote.wait_until(lambda: bool(remote.out_urbs[BULK_OUT]))
    assert remote.out_urbs[BULK_OUT] == [b"accepted"]
    assert lengths(remote.submits(BULK_OUT)) == [7, 8]


async def test_bulk_only_reset_clears_both_remote_halts() -> None:
    remote, drive = disk_remote(disk_image())
    reset = SetupPacket(OUT_CLASS_INTERFACE, 0xFF, 0, 0, 0)
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            await rig.host.control(reset)
            await remote.wait_until(lambda: len(remote.clear_halts) == 2)
            await trio.testing.wait_all_tasks_blocked()
            await _command(rig.host, 7, bytes(6), 0, data_in=False)
            assert parse_csw(await rig.host.transfer_in(BULK_IN, 13)) == Status(7, 0, PASSED)
    assert drive.resets == 1
    assert sorted(remote.clear_halts) == [BULK_OUT, BULK_IN]
    requests = [setup for setup, _ in remote.controls]
    assert requests.index(reset) < requests.index(SetupPacket.clear_feature_halt(BULK_IN))


# -- 7. disconnect, suspend --------------------------------------------------------------


async def test_disconnect_unlinks_what_is_in_flight_and_reconnect_resumes() -> None:
    remote = vendor_remote()
    with trio.fail_after(TIMEOUT):
        async with bridged(remote, depth=4) as rig:
            await rig.pumping(BULK_IN, INTERRUPT_IN, depth=4)
            held = set(remote.queued(BULK_IN) + remote.queued(INTERRUPT_IN))
            rig.host.disconnect()
            await remote.wait_until(
                lambda: not remote.queued(BULK_IN) and not remote.queued(INTERRUPT_IN)
            )
            await trio.testing.wait_all_tasks_blocked()
            assert {u.unlink_seqnum for u in remote.unlinks()} == held
            assert len(remote.unlinks()) == len(held)  # one unlink each
            assert rig.device.in_flight == 0
            answers = [m.message for m in remote.sent if isinstance(m.message, RetUnlink)]
            assert [a.status for a in answers] == [ECONNRESET] * len(held)
            rig.host.connect()
            await rig.configure()
            await rig.pumping(BULK_IN, INTERRUPT_IN, depth=4)
            remote.send_in(BULK_IN, b"again")
            assert await rig.host.transfer_in(BULK_IN, 64) == b"again"
    assert remote.set_configurations == [2, 2]


async def test_suspend_unlinks_and_resume_restarts() -> None:
    remote = vendor_remote()
    with trio.fail_after(TIMEOUT):
        async with bridged(remote, depth=2) as rig:
            await rig.pumping(BULK_IN, INTERRUPT_IN, depth=2)
            rig.host.suspend()
            await remote.wait_until(lambda: not remote.queued(BULK_IN))
            await trio.testing.wait_all_tasks_blocked()
            assert len(remote.unlinks()) == 4
            rig.host.resume()
            await rig.pumping(BULK_IN, INTERRUPT_IN, depth=2)
            remote.send_in(INTERRUPT_IN, b"wake")
            assert await rig.host.transfer_in(INTERRUPT_IN, 8) == b"wake"
    assert remote.set_configurations == [2]  # resume does not configure again


async def test_stopping_the_pumps_mid_send_keeps_the_connection() -> None:
    # An unplug (or SUSPEND, a Bulk-Only reset, a reconfiguration) during traffic stops the
    # pumps while a CMD_SUBMIT waits to go out. Only the writer task touches the socket, so
    # cancelling a pump cannot leave half a message on the wire and end the connection.
    remote = vendor_remote()
    with trio.fail_after(TIMEOUT):
        async with bridged(remote, lockstep=True) as rig:
            await rig.pumping(BULK_IN, INTERRUPT_IN)
            remote.pause()  # the server is slow to read: the next CMD_SUBMIT waits
            await rig.host.transfer_out(BULK_OUT, b"in the pipe")
            await trio.testing.wait_all_tasks_blocked()
            assert remote.submits(BULK_OUT) == []
            rig.host.disconnect()  # DISABLE: the pumps stop while one is sending
            await trio.testing.wait_all_tasks_blocked()
            remote.resume()
            await trio.testing.wait_all_tasks_blocked()
            assert rig.device.failure is None
            rig.host.connect()
            await rig.configure()
            remote.send_in(BULK_IN, b"alive")
            assert await rig.host.transfer_in(BULK_IN, 64) == b"alive"


# -- 8, 9. the remote side ending --------------------------------------------------------


async def test_remote_closing_ends_run_with_a_transport_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    remote = vendor_remote()
    closed_at: list[float] = []
    async with bridged(remote, run=False) as rig:

        async def plug_then_close() -> None:
            rig.host.connect()
            await rig.configure()
            await rig.pumping(BULK_IN, INTERRUPT_IN)
            closed_at.append(trio.current_time())
            await remote.close()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(plug_then_close)
            with pytest.raises(TransportError, match="closed the connection"):
                await rig.bridge.run()
        ended = trio.current_time()
    assert ended - closed_at[0] < 0.1  # no timeout was waited for


async def test_hostile_remote_ends_run_with_a_protocol_error() -> None:
    remote = vendor_remote()
    with trio.fail_after(TIMEOUT):
        async with bridged(remote, run=False) as rig:

            async def plug_then_lie() -> None:
                rig.host.connect()
                await rig.configure()
                await rig.pumping(BULK_IN)
                seqnum = remote.queued(BULK_IN)[0]
                # 1000 bytes for a 64-byte URB: our protocol layer refuses it.
                remote.complete_raw(seqnum, RetSubmit(seqnum, 0, 1000, bytes(1000)))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(plug_then_lie)
                with pytest.raises(
                    RemoteProtocolError, match=r"actual_length 1000 outside 0\.\.64"
                ):
                    await rig.bridge.run()
            assert isinstance(rig.device.failure, RemoteProtocolError)
