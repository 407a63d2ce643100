"""The checks: each takes a configured ``Bed`` and its ``Ep0`` loop (see ``run_check``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import trio

from usbip_gadget.gadget import EndpointShutdown, GadgetBackend, GadgetEndpoint
from usbip_gadget.testing import HostStall
from usbip_gadget.usb import SetupPacket

from ._bed import (
    ADDRESSES,
    BIND,
    BULK_IN,
    BULK_OUT,
    DISABLE,
    ENABLE,
    INTERRUPT_IN,
    INTERRUPT_OUT,
    SETUP,
    SNAPSHOT,
    TRANSFER_TIMEOUT,
    VENDOR_IN,
    VENDOR_OUT,
    Answer,
    Bed,
    Check,
    Ep0,
)

A = TypeVar("A")
B = TypeVar("B")

# -- helpers ------------------------------------------------------------------------------


def pattern(length: int, seed: int = 0) -> bytes:
    """``length`` bytes that differ from packet to packet and from ``seed`` to ``seed``."""
    return bytes((at * 7 + seed * 31 + at // 64) & 0xFF for at in range(length))


def endpoint(bed: Bed, address: int) -> GadgetEndpoint:
    """The backend's endpoint replaying remote ``address`` (looked up after each ENABLE)."""
    found = [ep for ep in bed.backend.endpoints if ep.descriptor.b_endpoint_address == address]
    assert len(found) == 1, f"0x{address:02x}: {len(found)} endpoints"
    return found[0]


def size(address: int) -> int:
    """The remote's wMaxPacketSize of ``address``."""
    endpoints = SNAPSHOT.configurations[0].endpoints()
    (found,) = (ep for ep in endpoints if ep.b_endpoint_address == address)
    return found.max_packet_size


async def both(gadget: Callable[[], Awaitable[A]], host: Callable[[], Awaitable[B]]) -> tuple[A, B]:
    """Run the gadget side and the host side of a transfer together; both results."""
    on_gadget: list[A] = []
    on_host: list[B] = []

    async def gadget_side() -> None:
        on_gadget.append(await gadget())

    async def host_side() -> None:
        on_host.append(await host())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(gadget_side)
        nursery.start_soon(host_side)
    return on_gadget[0], on_host[0]


def replying(data: bytes) -> Answer:
    async def answer(backend: GadgetBackend, setup: SetupPacket) -> None:
        await backend.reply(data)

    return answer


def transfers_of(runs: list[bytes], packet: int) -> list[bytes]:
    """Runs joined into the transfers that made them: each ends short (or is a ZLP)."""
    found: list[bytes] = []
    pending = b""
    for run in runs:
        pending += run
        if not run or len(run) % packet:
            found.append(pending)
            pending = b""
    return found


async def host_reads(bed: Bed, address: int, count: int) -> list[bytes]:
    """``count`` IN transfers of four packets' room each."""
    length = 4 * size(address)
    host = bed.host
    return [await host.transfer_in(address, length, timeout=TRANSFER_TIMEOUT) for _ in range(count)]


async def host_sends(bed: Bed, address: int, transfers: list[bytes]) -> None:
    for data in transfers:
        await bed.host.transfer_out(address, data, timeout=TRANSFER_TIMEOUT)


# -- ep0 ----------------------------------------------------------------------------------


async def plug_then_configure(bed: Bed, ep0: Ep0) -> None:
    """ENABLE once the host has configured the gadget; BIND, if reported, once before it
    (FunctionFS drops an unread BIND when ENABLE comes; GadgetFS has none)."""
    kinds = ep0.kinds()
    before = kinds[: kinds.index(ENABLE)]
    assert set(before) <= {BIND, SETUP}, kinds
    assert before.count(BIND) <= 1, kinds
    assert BIND not in before or before.index(BIND) == 0, kinds
    addresses = [ep.descriptor.b_endpoint_address for ep in bed.backend.endpoints]
    assert addresses == list(ADDRESSES)


async def setup_in_is_replied(bed: Bed, ep0: Ep0) -> None:
    """A vendor IN request reaches ep0 whole; ``reply`` is its data stage, cut to wLength."""
    request = SetupPacket(VENDOR_IN, 0x51, 0x1234, 0, 64)
    ep0.answer = replying(pattern(10))
    assert await bed.host.control_in(request) == pattern(10)
    assert ep0.setups[-1] == request
    short = SetupPacket(VENDOR_IN, 0x52, 0, 0, 4)
    assert await bed.host.control_in(short) == pattern(10)[:4]
    assert ep0.setups[-1] == short


async def setup_out_is_received(bed: Bed, ep0: Ep0) -> None:
    """``receive`` gives an OUT request's data, ``b""`` when it has none, and acks it."""
    received: list[bytes] = []

    async def answer(backend: GadgetBackend, setup: SetupPacket) -> None:
        received.append(await backend.receive())

    ep0.answer = answer
    with_data = SetupPacket(VENDOR_OUT, 0x53, 7, 0, 12)
    await bed.host.control_out(with_data, pattern(12, seed=1))
    without = SetupPacket(VENDOR_OUT, 0x54, 8, 0, 0)
    await bed.host.control_out(without)
    await ep0.wait_until(lambda: len(received) == 2)
    assert received == [pattern(12, seed=1), b""]
    assert ep0.setups[-2:] == [with_data, without]


async def setup_is_stalled(bed: Bed, ep0: Ep0) -> None:
    """``stall`` stalls IN and OUT requests; ep0 answers the next request as usual."""
    with pytest.raises(HostStall):
        await bed.host.control_in(SetupPacket(VENDOR_IN, 0x55, 0, 0, 8))
    with pytest.raises(HostStall):
        await bed.host.control_out(SetupPacket(VENDOR_OUT, 0x56, 0, 0, 0))
    ep0.answer = replying(b"again")
    assert await bed.host.control_in(SetupPacket(VENDOR_IN, 0x57, 0, 0, 8)) == b"again"


# -- data endpoints -----------------------------------------------------------------------


async def _write_packets(bed: Bed, address: int) -> None:
    ep, packet = endpoint(bed, address), size(address)
    whole, short = pattern(2 * packet, seed=2), pattern(packet // 2 + 1, seed=3)

    async def gadget() -> None:
        for data in (whole, b"", short, b""):
            await ep.write(data)

    _, reads = await both(gadget, lambda: host_reads(bed, address, 3))
    assert reads == [whole, short, b""], f"0x{address:02x}"


async def write_sends_exact_packets(bed: Bed, ep0: Ep0) -> None:
    """``write`` sends full packets and a short last one; ``b""`` a zero-length packet, which
    ends the host's transfer."""
    for address in (BULK_IN, INTERRUPT_IN):
        await _write_packets(bed, address)


async def _read_transfers(bed: Bed, address: int) -> None:
    ep, packet = endpoint(bed, address), size(address)
    sent = [pattern(packet + 10, seed=4), b"", pattern(2 * packet, seed=5)]
    lengths = [4 * packet, 4 * packet, 2 * packet]

    async def gadget() -> list[bytes]:
        return [await ep.read(length) for length in lengths]

    got, _ = await both(gadget, lambda: host_sends(bed, address, sent))
    assert got == sent, f"0x{address:02x}"


async def read_ends_at_a_short_packet(bed: Bed, ep0: Ep0) -> None:
    """``read`` ends at a short packet (``b""`` for a zero-length one) or at ``length``."""
    for address in (BULK_OUT, INTERRUPT_OUT):
        await _read_transfers(bed, address)


async def queued_writes_keep_their_order(bed: Bed, ep0: Ep0) -> None:
    """Writes queued with ``queue_write`` reach the host in order, each its own transfer."""
    ep, packet = endpoint(bed, BULK_IN), size(BULK_IN)
    sent = [pattern(1, seed=6), pattern(packet - 1, seed=7), pattern(17, seed=8)]
    queued = [ep.queue_write(data) for data in sent]

    async def gadget() -> None:
        for write in queued:
            await write.wait()

    _, reads = await both(gadget, lambda: host_reads(bed, BULK_IN, len(sent)))
    assert reads == sent


async def packet_reader_gives_runs(bed: Bed, ep0: Ep0) -> None:
    """A ``packet_reader`` gives the host's packets as runs that rebuild its transfers."""
    ep, packet = endpoint(bed, BULK_OUT), size(BULK_OUT)
    sent = [pattern(2 * packet + 5, seed=9), pattern(7, seed=10), b""]

    async def gadget() -> list[bytes]:
        runs: list[bytes] = []
        async with ep.packet_reader(4) as reader:
            while len(transfers_of(runs, packet)) < len(sent):
                taken = await reader.take()
                assert taken, "take() gave nothing"
                assert all(len(run) <= 4 * packet for run in taken), [len(r) for r in taken]
                runs += taken
        return transfers_of(runs, packet)

    got, _ = await both(gadget, lambda: host_sends(bed, BULK_OUT, sent))
    assert got == sent


async def halt_lasts_until_cleared(bed: Bed, ep0: Ep0) -> None:
    """After ``halt`` the host's transfers stall until it clears the halt; then data move."""
    data = pattern(100, seed=11)
    ep = endpoint(bed, BULK_IN)
    await ep.halt()
    with pytest.raises(HostStall):
        await bed.host.transfer_in(BULK_IN, size(BULK_IN), timeout=TRANSFER_TIMEOUT)
    await bed.host.clear_halt(BULK_IN)
    _, reads = await both(lambda: ep.write(data), lambda: host_reads(bed, BULK_IN, 1))
    assert reads == [data]
    ep = endpoint(bed, BULK_OUT)
    await ep.halt()
    with pytest.raises(HostStall):
        await bed.host.transfer_out(BULK_OUT, data, timeout=TRANSFER_TIMEOUT)
    await bed.host.clear_halt(BULK_OUT)
    got, _ = await both(lambda: ep.read(size(BULK_OUT)), lambda: host_sends(bed, BULK_OUT, [data]))
    assert got == data


async def _shut_down(call: Callable[[], Awaitable[object]]) -> None:
    with pytest.raises(EndpointShutdown):
        await call()


async def unplug_shuts_endpoints_down(bed: Bed, ep0: Ep0) -> None:
    """Unplugged: DISABLE, and I/O in flight ends with ``EndpointShutdown``. Plugged again:
    ENABLE, and data move."""
    enabled = ep0.kinds().index(ENABLE)
    reading, writing = endpoint(bed, BULK_OUT), endpoint(bed, BULK_IN)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_shut_down, lambda: reading.read(size(BULK_OUT)))
        nursery.start_soon(_shut_down, lambda: writing.write(pattern(size(BULK_IN), seed=12)))
        await bed.host.settle()
        await bed.host.unplug()
    disabled = await ep0.wait_for(DISABLE, after=enabled)
    await bed.host.plug()
    await ep0.wait_for(ENABLE, after=disabled)
    data = pattern(33, seed=13)
    reading = endpoint(bed, BULK_OUT)
    got, _ = await both(
        lambda: reading.read(size(BULK_OUT)), lambda: host_sends(bed, BULK_OUT, [data])
    )
    assert got == data


CHECKS: tuple[Check, ...] = (
    plug_then_configure,
    setup_in_is_replied,
    setup_out_is_received,
    setup_is_stalled,
    write_sends_exact_packets,
    read_ends_at_a_short_packet,
    queued_writes_keep_their_order,
    packet_reader_gives_runs,
    halt_lasts_until_cleared,
    unplug_shuts_endpoints_down,
)


def check_id(check: Check) -> str:
    return getattr(check, "__name__", repr(check))
