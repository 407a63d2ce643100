"""Packets on a USB endpoint: the one model every test double here is built on.

A device moves an endpoint's data in packets of at most wMaxPacketSize bytes. A transfer is a
run of full packets ended by a short one — a zero-length packet (ZLP) when the data fill whole
packets and the sender marks the end — or by the receiver's buffer filling (USB 2.0 §5.8.3).
A packet larger than the room left in the buffer is babble: the transfer ends with -EOVERFLOW
and the packet is lost, as on a bus. A device can also answer with STALL: a stall in a stream
of IN packets halts the endpoint once the packets before it are delivered, and every transfer
then fails with -EPIPE until the host clears the halt (CLEAR_FEATURE(ENDPOINT_HALT)).

- ``packets_of``: a transfer's data as the sender puts it on the bus.
- ``InTransfer``: one IN transfer collecting packets as a host controller does.
- ``EndpointQueue``: one endpoint on the device's side: IN packets (and stalls) waiting for
  the host, and whether the endpoint is halted.
- ``host_reads``: what a host plugged straight into the device reads from a packet stream.
- ``Reply`` and ``ControlHandler``: how a device model answers a control request.

Statuses are a URB's: 0, ``STALLED`` (-EPIPE) or ``BABBLE`` (-EOVERFLOW).
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable, Iterable
from enum import Enum

from usbip_gadget.usb import SetupPacket

OK = 0
STALLED = -errno.EPIPE
BABBLE = -errno.EOVERFLOW


class Reply(Enum):
    """A device model's non-data answers to a control request."""

    STALL = "stall"  # the device stalls the request
    HOLD = "hold"  # the device never answers it


ControlHandler = Callable[[SetupPacket, bytes], bytes | Reply]


class Stall:
    """The device stalls here in an IN packet stream (``STALL_MARK``)."""

    __slots__ = ()


STALL_MARK = Stall()


def packets_of(data: bytes, max_packet: int, *, zlp: bool = False) -> list[bytes]:
    """``data`` as a device sends it: full packets, a short last one, a ZLP if asked.

    ``b""`` is one zero-length packet; ``zlp`` adds one after data that fill whole packets.
    """
    packets = [data[at : at + max_packet] for at in range(0, len(data), max_packet)] or [b""]
    if zlp and data and len(data) % max_packet == 0:
        packets.append(b"")
    return packets


class InTransfer:
    """One IN transfer of ``length`` bytes collecting packets (``data``) as a host controller
    does: it ends at a short packet or once full; a packet larger than the room left is babble.
    """

    __slots__ = ("data", "length", "max_packet")

    def __init__(self, length: int, max_packet: int) -> None:
        self.length = length
        self.max_packet = max(1, max_packet)
        self.data = bytearray()

    @property
    def room(self) -> int:
        """Bytes the transfer can still take."""
        return self.length - len(self.data)

    def add(self, packet: bytes) -> int | None:
        """Take ``packet``: the status once the transfer is over, None while it goes on."""
        if len(packet) > self.room:
            return BABBLE
        self.data += packet
        if len(packet) < self.max_packet or not self.room:
            return OK
        return None


class EndpointQueue:
    """One endpoint as the device holds it: IN packets and stalls not yet sent (``items``),
    and ``halted``, set by a stall met in the stream or by the device model at once."""

    __slots__ = ("halted", "items", "max_packet")

    def __init__(self, max_packet: int) -> None:
        self.max_packet = max(1, max_packet)
        self.items: deque[bytes | Stall] = deque()
        self.halted = False

    def __len__(self) -> int:
        return len(self.items)

    def feed(self, *items: bytes | Stall) -> None:
        """Packets (or ``STALL_MARK``) the device sends next, as they are."""
        self.items.extend(items)

    def send(self, data: bytes, *, zlp: bool = False) -> None:
        """One transfer's data as packets (``packets_of``)."""
        self.items.extend(packets_of(data, self.max_packet, zlp=zlp))

    def fill(self, transfer: InTransfer) -> int | None:
        """Move packets into ``transfer`` until it is over: its status, or None when the packets
        run out first. A stall met halts the endpoint; a halted endpoint stalls the transfer."""
        while True:
            if self.halted:
                return STALLED
            if not self.items:
                return None
            item = self.items.popleft()
            if isinstance(item, Stall):
                self.halted = True
                continue
            status = transfer.add(item)
            if status is not None:
                return status


def host_reads(
    packets: Iterable[bytes], max_packet: int, lengths: Iterable[int]
) -> list[tuple[int, bytes]]:
    """(length, data) of the IN transfers a directly attached host reads from ``packets``.

    One transfer per element of ``lengths`` until the packets run out; a transfer that meets
    a packet larger than its room left reads ``b"babble"``. The packets must end short.
    """
    queue = EndpointQueue(max_packet)
    queue.feed(*packets)
    reads = []
    for length in lengths:
        if not queue:
            break
        transfer = InTransfer(length, max_packet)
        status = queue.fill(transfer)
        reads.append((length, b"babble" if status == BABBLE else bytes(transfer.data)))
    return reads


__all__ = [
    "BABBLE",
    "OK",
    "STALLED",
    "STALL_MARK",
    "ControlHandler",
    "EndpointQueue",
    "InTransfer",
    "Reply",
    "Stall",
    "host_reads",
    "packets_of",
]
