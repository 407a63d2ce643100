"""What one connection's URB phase holds in memory, counted against its budget.

Bytes on the wire understate what a queued thing costs in Python: a 48-byte RET_UNLINK
waiting to be sent is an 81-byte ``bytes`` object and a slot in the outbox, so counting wire
bytes let an unlink flood hold about twice its budget. Here each thing held is counted as
its payload plus a fixed cost for its bookkeeping, from ``CmdSubmit`` received until the URB
leaves its endpoint's queue (an unlinked URB still queued holds its data too), and from a
reply's packing until it is written. The fixed costs are what tracemalloc measures on
CPython 3.11 (64-bit), rounded up; ``tests/server/test_budget.py`` floods a server and checks
that all it allocates stays within the budget.
"""

from __future__ import annotations

from usbip_gadget._errors import RemoteProtocolError
from usbip_gadget.protocol import CmdSubmit

#: A URB: its ``_Urb`` record, the ``CmdSubmit`` with its setup bytes, its entries in the
#: URB table, the connection's seqnum set and its endpoint's queue (measured: about 600).
URB_COST = 1024
#: An ISO packet descriptor of a CMD_SUBMIT (an ``IsoPacket``: about 100).
ISO_PACKET_COST = 160
#: A CMD_UNLINK waiting for its URB's worker: its seqnum in the URB's list and in the
#: connection's two tables (measured: about 150).
UNLINK_COST = 256
#: A reply waiting to be written, beyond its bytes: the object and its outbox slot (about 45).
REPLY_COST = 96


def urb_cost(cmd: CmdSubmit) -> int:
    """What a received URB holds until its worker is done with it."""
    payload = max(cmd.transfer_buffer_length, len(cmd.data))
    return URB_COST + payload + ISO_PACKET_COST * len(cmd.iso_packets)


def reply_cost(data: bytes) -> int:
    """What a packed reply holds until it is written."""
    return REPLY_COST + len(data)


class Ledger:
    """The bytes one connection holds; a command that would exceed ``budget`` is refused.

    Replies are counted without a check: each follows a command admitted with room for it,
    so the total exceeds the budget by one reply at most.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.held = 0

    def admit(self, cost: int) -> None:
        """Count ``cost`` for a new command, or drop the client if it does not fit."""
        if self.held + cost > self.budget:
            raise RemoteProtocolError(f"more than {self.budget} bytes in flight")
        self.take(cost)

    def take(self, cost: int) -> None:
        self.held += cost

    def give(self, cost: int) -> None:
        self.held -= cost
