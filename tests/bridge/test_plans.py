"""URB lengths: one packet per URB in general, whole commands for Bulk-Only Transport."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from usbip_gadget.bridge import BulkOnlyPlan, StreamPlan, plans_for, whole_packets
from usbip_gadget.bridge._plans import MAX_URB_LENGTH
from usbip_gadget.usb import EndpointDescriptor, parse_configuration

from ..usb.vectors import CDC_ACM_CONFIG, KEYBOARD_CONFIG, MASS_STORAGE_CONFIG

BULK_IN = EndpointDescriptor(0x81, 2, 512, 0)
BULK_OUT = EndpointDescriptor(0x02, 2, 512, 0)


def cbw(length: int, *, data_in: bool, tag: int = 7) -> bytes:
    flags = 0x80 if data_in else 0
    return struct.pack("<IIIBBB16s", 0x43425355, tag, length, flags, 0, 10, b"\x28")


async def drain_in(plan: BulkOnlyPlan) -> list[int]:
    lengths = []
    while True:
        with trio.move_on_after(0.01) as scope:
            lengths.append(await plan.next_in(0x81))
        if scope.cancelled_caught:
            return lengths


@given(st.integers(0, 1 << 22), st.sampled_from([8, 64, 512, 1024]))
def test_whole_packets_rounds_up_to_at_least_one_packet(length: int, packet: int) -> None:
    rounded = whole_packets(length, packet)
    assert rounded % packet == 0
    assert rounded >= max(length, packet)
    assert rounded - length < packet or length == 0


def test_mass_storage_gets_the_bulk_only_plan_and_others_stream() -> None:
    storage = plans_for(parse_configuration(MASS_STORAGE_CONFIG))
    assert isinstance(storage[0x81], BulkOnlyPlan)
    assert storage[0x81] is storage[0x02]
    keyboard = plans_for(parse_configuration(KEYBOARD_CONFIG))
    assert all(isinstance(plan, StreamPlan) for plan in keyboard.values())
    acm = plans_for(parse_configuration(CDC_ACM_CONFIG))
    assert len(acm) == 3
    assert all(isinstance(plan, StreamPlan) for plan in acm.values())


async def test_stream_plan_is_one_packet_per_urb() -> None:
    plan = plans_for(parse_configuration(KEYBOARD_CONFIG))
    (address,) = plan
    ep = parse_configuration(KEYBOARD_CONFIG).endpoints()[0]
    assert await plan[address].next_in(address) == ep.max_packet_size


async def test_read_command_queues_its_data_and_status_at_once() -> None:
    plan = BulkOnlyPlan(BULK_IN, BULK_OUT)
    assert plan.next_out(0x02) == 512  # a CBW fits in one packet
    plan.saw_out(0x02, cbw(4096, data_in=True))
    assert await drain_in(plan) == [4096, 512]
    assert plan.next_out(0x02) == 512  # the next CBW


async def test_odd_read_lengths_are_whole_packets() -> None:
    plan = BulkOnlyPlan(BULK_IN, BULK_OUT)
    plan.saw_out(0x02, cbw(36, data_in=True))  # INQUIRY
    assert await drain_in(plan) == [512, 512]


async def test_write_command_reads_its_data_stage_then_the_next_cbw() -> None:
    plan = BulkOnlyPlan(BULK_IN, BULK_OUT)
    plan.saw_out(0x02, cbw(8192, data_in=False))
    assert await drain_in(plan) == [512]  # only the CSW comes back
    assert plan.next_out(0x02) == 8192
    plan.saw_out(0x02, bytes(8192))
    assert plan.next_out(0x02) == 512


async def test_a_short_packet_ends_a_data_out_stage_early() -> None:
    plan = BulkOnlyPlan(BULK_IN, BULK_OUT)
    plan.saw_out(0x02, cbw(8192, data_in=False))
    plan.saw_out(0x02, bytes(1000))
    assert plan.next_out(0x02) == 512


async def test_long_stages_are_split_into_bounded_urbs() -> None:
    plan = BulkOnlyPlan(BULK_IN, BULK_OUT)
    length = 3 * MAX_URB_LENGTH + 1024
    plan.saw_out(0x02, cbw(length, data_in=True))
    lengths = await drain_in(plan)
    assert lengths == [MAX_URB_LENGTH] * 3 + [1024, 512]
    plan.saw_out(0x02, cbw(length, data_in=False))
    assert plan.next_out(0x02) == MAX_URB_LENGTH


@pytest.mark.parametrize(
    "junk", [b"", bytes(31), b"USBS" + bytes(27), cbw(512, data_in=True)[:30], bytes(512)]
)
async def test_something_that_is_not_a_cbw_reads_one_packet(junk: bytes) -> None:
    plan = BulkOnlyPlan(BULK_IN, BULK_OUT)
    plan.saw_out(0x02, junk)
    assert await drain_in(plan) == [512]
    assert plan.commands == 0


async def test_requeue_puts_unlinked_urbs_first_and_reset_forgets() -> None:
    plan = BulkOnlyPlan(BULK_IN, BULK_OUT)
    plan.saw_out(0x02, cbw(1024, data_in=True))
    assert await plan.next_in(0x81) == 1024
    plan.requeue(0x81, [2048])
    assert await drain_in(plan) == [2048, 512]
    plan.saw_out(0x02, cbw(4096, data_in=False))
    plan.reset()
    assert await drain_in(plan) == []
    assert plan.next_out(0x02) == 512


async def test_next_in_waits_for_a_command() -> None:
    plan = BulkOnlyPlan(BULK_IN, BULK_OUT)
    async with trio.open_nursery() as nursery:
        got: list[int] = []

        async def wait() -> None:
            got.append(await plan.next_in(0x81))

        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        plan.saw_out(0x02, cbw(0, data_in=False))
    assert got == [512]


async def test_hostile_cbws_leave_the_plan_bounded() -> None:
    # A PC that announces 4 GiB of data-in with every CBW and reads none of it: each command
    # replaces the one before, so the plan holds one command's stages, not 4096 lengths each.
    plan = BulkOnlyPlan(BULK_IN, BULK_OUT)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for tag in range(3000):
            plan.saw_out(0x02, cbw(0xFFFFFFFF, data_in=True, tag=tag))
            assert plan.held <= 64
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024
    assert plan.commands == 3000
    # What the last command announced is still asked for, lazily, in bounded URBs.
    assert [await plan.next_in(0x81) for _ in range(3)] == [MAX_URB_LENGTH] * 3


async def test_a_short_urb_ends_the_data_stage_and_only_the_status_is_left() -> None:
    plan = BulkOnlyPlan(BULK_IN, BULK_OUT)
    plan.saw_out(0x02, cbw(3 * MAX_URB_LENGTH, data_in=True))
    assert await plan.next_in(0x81) == MAX_URB_LENGTH
    plan.saw_in(0x81, MAX_URB_LENGTH, 4096)  # the device had 4 KiB: the stage is over
    assert await drain_in(plan) == [512]


async def test_a_new_cbw_drops_what_the_command_before_left() -> None:
    plan = BulkOnlyPlan(BULK_IN, BULK_OUT)
    plan.saw_out(0x02, cbw(2 * MAX_URB_LENGTH, data_in=True))
    assert await plan.next_in(0x81) == MAX_URB_LENGTH
    plan.requeue(0x81, [MAX_URB_LENGTH])
    plan.saw_out(0x02, cbw(1024, data_in=True, tag=8))
    assert await drain_in(plan) == [1024, 512]
