"""Isochronous URBs: the packet layout of a transfer, and IN data spread back over it."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from usbip_gadget.client._urb import UrbResult
from usbip_gadget.protocol import IsoPacket


def iso_layout(sizes: Sequence[int]) -> tuple[IsoPacket, ...]:
    """Packets of ``sizes`` bytes, back to back from offset 0."""
    offsets = itertools.accumulate(sizes, initial=0)
    return tuple(IsoPacket(offset, size) for offset, size in zip(offsets, sizes, strict=False))


def unpack_iso_in(result: UrbResult, buffer_length: int) -> bytes:
    """Spread a compacted ISO IN payload back to each packet's offset (zero padding between)."""
    buffer = bytearray(buffer_length)
    pos = 0
    for packet in result.iso_packets:
        chunk = result.data[pos : pos + packet.actual_length]
        buffer[packet.offset : packet.offset + len(chunk)] = chunk
        pos += packet.actual_length
    return bytes(buffer)
