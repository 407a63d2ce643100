"""``--bulk-urbs adaptive``: URB lengths that follow the device, OUT packets pipelined.

What must hold whatever the lengths: the host reads exactly the packets the device sent, the
device receives exactly the packets the host sent, and a URB the device leaves part-filled
does not wedge the endpoint.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from tests.bridge.test_bridge import BULK_IN, BULK_OUT, INTERRUPT_IN, TIMEOUT, bridged, lengths
from tests.bridge.test_bridge import vendor_remote as _vendor_remote
from usbip_gadget.bridge import AdaptivePlan, describe_plans, plans_for
from usbip_gadget.bridge._plans import ADAPTIVE_MAX, STUCK_AFTER
from usbip_gadget.gadget._backend import runs
from usbip_gadget.testing import host_reads, packets_of
from usbip_gadget.usb import EndpointDescriptor, parse_configuration

from ..usb.vectors import MASS_STORAGE_CONFIG

BULK_512 = EndpointDescriptor(0x81, 2, 512, 0)
INTERRUPT_8 = EndpointDescriptor(0x83, 3, 8, 10)
PACKET = 64  # the vendor device's bulk wMaxPacketSize

vendor_remote = _vendor_remote


# -- the plan ----------------------------------------------------------------------------


async def test_in_urbs_double_while_filled_and_drop_to_a_packet_when_short() -> None:
    plan = AdaptivePlan([BULK_512, INTERRUPT_8])
    assert await plan.next_in(0x81) == 512
    sizes = []
    for _ in range(9):
        size = await plan.next_in(0x81)
        plan.saw_in(0x81, size, size)
        sizes.append(size)
    assert sizes == [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 65536]
    plan.saw_in(0x81, 65536, 1000)  # a short packet ended it
    assert await plan.next_in(0x81) == 512
    # Interrupt endpoints stay one packet per URB.
    plan.saw_in(0x83, 8, 8)
    assert await plan.next_in(0x83) == 8


async def test_a_pinned_endpoint_stays_one_packet_even_after_a_reset() -> None:
    plan = AdaptivePlan([BULK_512])
    plan.saw_in(0x81, 512, 512)
    assert await plan.next_in(0x81) == 1024
    plan.pin(0x81)
    plan.saw_in(0x81, 512, 512)
    plan.reset()
    plan.saw_in(0x81, 512, 512)
    assert await plan.next_in(0x81) == 512


def test_plans_follow_the_policy_and_mass_storage_keeps_its_own() -> None:
    storage = parse_configuration(MASS_STORAGE_CONFIG)
    exact, adaptive = plans_for(storage, "exact"), plans_for(storage, "adaptive")
    assert type(exact[0x81]) is type(adaptive[0x81])  # Bulk-Only Transport either way
    lines = describe_plans(storage, "adaptive")
    assert all("Bulk-Only Transport" in line for line in lines)
    with pytest.raises(ValueError, match="unknown bulk URB policy"):
        plans_for(storage, "fast")


def test_describe_says_what_each_endpoint_does() -> None:
    config = vendor_remote().snapshot.configurations[0]
    exact = describe_plans(config, "exact")
    adaptive = describe_plans(config, "adaptive")
    assert exact[0] == "0x02 bulk OUT: exact, one packet per URB, each URB's result awaited" + (
        " before the next"
    )
    assert exact[1] == "0x81 bulk IN: exact, one packet (64 bytes) per URB"
    assert adaptive[0].startswith("0x02 bulk OUT: packets forwarded as they arrive")
    assert adaptive[1].startswith("0x81 bulk IN: adaptive, 64 to 65536 bytes per URB")
    assert adaptive[2] == "0x83 interrupt IN: exact, one packet (8 bytes) per URB"


# -- OUT payloads ------------------------------------------------------------------------

_packets = st.lists(
    st.one_of(
        st.just(b"f" * PACKET),
        st.binary(min_size=0, max_size=PACKET - 1),
    ),
    max_size=2200,
)


def _as_packets(payloads: list[bytes]) -> list[bytes]:
    """What a host controller sends for these OUT URBs (no URB_ZERO_PACKET)."""
    out: list[bytes] = []
    for payload in payloads:
        out += packets_of(payload, PACKET)
    return out


@given(_packets)
def test_out_runs_carry_exactly_the_hosts_packets(packets: list[bytes]) -> None:
    payloads = runs(packets, PACKET, ADAPTIVE_MAX)
    assert _as_packets(payloads) == packets
    assert all(len(p) <= ADAPTIVE_MAX for p in payloads)


# -- through the bridge ------------------------------------------------------------------


async def test_a_long_in_stream_reads_exactly_and_its_urbs_grow() -> None:
    remote = vendor_remote()
    data = bytes(i % 251 for i in range(100_000))  # ends with a short packet
    packets = packets_of(data, PACKET)
    reads = [4096] * (len(data) // 4096 + 1)
    with trio.fail_after(TIMEOUT):
        async with bridged(remote, bulk_urbs="adaptive") as rig:
            remote.feed(BULK_IN, *packets)
            got = [(n, await rig.host.transfer_in(BULK_IN, n)) for n in reads]
    assert got == host_reads(packets, PACKET, reads)
    sizes = lengths(remote.submits(BULK_IN))
    assert max(sizes) >= 16 * PACKET
    assert all(size % PACKET == 0 for size in sizes)


async def test_a_urb_left_part_filled_is_unlinked_and_the_endpoint_goes_exact(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The device sends a multiple of packets with no ZLP and then waits for the host: a URB
    # longer than that holds the tail (this FakeRemote, like Linux usbip-host, drops what
    # an unlinked URB held). The endpoint must not wedge; what is lost is one URB at most.
    remote = vendor_remote()
    first = bytes(i % 253 for i in range(200 * PACKET))
    async with bridged(remote, bulk_urbs="adaptive") as rig:
        remote.feed(BULK_IN, *packets_of(first, PACKET))
        received = b""
        with trio.move_on_after(STUCK_AFTER * 4):
            while len(received) < len(first):
                received += await rig.host.transfer_in(BULK_IN, 4096)
        assert first.startswith(received)
        assert len(first) - len(received) <= ADAPTIVE_MAX
        await remote.wait_until(lambda: any("not filled within" in line for line in rig.log))
        remote.feed(BULK_IN, b"after", b"x" * PACKET, b"")
        assert await rig.host.transfer_in(BULK_IN, 512) == b"after"
        assert await rig.host.transfer_in(BULK_IN, 512) == b"x" * PACKET
    stuck = min(unlink.seqnum for unlink in remote.unlinks())  # the first: the stuck URBs
    later = lengths([cmd for cmd in remote.submits(BULK_IN) if cmd.seqnum > stuck])
    assert later
    assert set(later) == {PACKET}
    (line,) = [line for line in rig.log if "not filled within" in line]
    assert "one packet per URB from now on" in line


@pytest.mark.parametrize("aio", [True, False], ids=["ring", "one-read-at-a-time"])
async def test_out_packets_arrive_as_the_host_sent_them(aio: bool) -> None:
    remote = vendor_remote()
    transfers = [
        (b"hello", False),
        (b"p" * 64, False),
        (bytes(range(200)), False),
        (b"", False),
        (b"r" * 128, True),
        (b"s" * 4096, False),
        (b"t", False),
    ]
    sent: list[bytes] = []
    for data, zlp in transfers:
        sent += packets_of(data, PACKET, zlp=zlp)
    with trio.fail_after(TIMEOUT):
        async with bridged(remote, bulk_urbs="adaptive", aio=aio) as rig:
            for data, zlp in transfers:
                await rig.host.transfer_out(BULK_OUT, data, zero_packet=zlp)
            total = sum(len(data) for data, _ in transfers)
            await remote.wait_until(lambda: len(b"".join(remote.out_urbs[BULK_OUT])) == total)
            await remote.wait_until(lambda: _as_packets(remote.out_urbs[BULK_OUT]) == sent)
    urbs = remote.out_urbs[BULK_OUT]
    assert b"s" * 4096 in b"".join(urbs)
    if aio:
        assert len(urbs) < len(sent)  # full packets travel together


async def test_interrupt_in_stays_one_report_per_urb() -> None:
    remote = vendor_remote()
    reports = [bytes([i]) * 8 for i in range(5)]
    with trio.fail_after(TIMEOUT):
        async with bridged(remote, bulk_urbs="adaptive") as rig:
            remote.feed(INTERRUPT_IN, *reports)
            got = [await rig.host.transfer_in(INTERRUPT_IN, 8) for _ in reports]
    assert got == reports
    assert set(lengths(remote.submits(INTERRUPT_IN))) == {8}
