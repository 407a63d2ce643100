"""The URBs sent on one connection, by seqnum, and the unlinks sent for them.

Replies are matched here. A RET_SUBMIT settles the URB of its seqnum; a RET_UNLINK settles
the URB its CMD_UNLINK named. Each URB is settled once: a reply for one already settled (a
RET_SUBMIT that raced its unlink) or already forgotten (its caller gave up) is dropped.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable

import trio

from usbip_gadget._errors import UsbipGadgetError, transfer_error
from usbip_gadget.protocol import CmdUnlink, Message, RetSubmit

_SEQNUM_MASK = 0xFFFFFFFF  # the wire's seqnum is a u32


class Pending:
    """One URB waiting for its RET_SUBMIT (or for its unlink to succeed)."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: RetSubmit | None = None
        self.error: UsbipGadgetError | None = None


class UrbTable:
    """Seqnums, the URBs waiting for a reply, and the unlinks in flight on one connection.

    ``send`` queues a message for the server and raises the failure of an ended connection.
    An entry lives from ``add`` until ``forget``: settling it does not remove it, so a reply
    that comes late still finds it settled and is dropped, and its seqnum is not reused.
    """

    __slots__ = ("_devid", "_pending", "_send", "_seqnums", "_unlinks", "unlink_timeout")

    def __init__(
        self,
        send: Callable[[Message], None],
        devid: int,
        *,
        unlink_timeout: float,
        first_seqnum: int = 1,
    ) -> None:
        self.unlink_timeout = unlink_timeout
        self._send = send
        self._devid = devid
        self._seqnums = itertools.count(first_seqnum)
        self._pending: dict[int, Pending] = {}
        self._unlinks: dict[int, int] = {}  # CMD_UNLINK seqnum -> the seqnum it unlinks

    def __len__(self) -> int:
        """The URBs added and not yet forgotten."""
        return len(self._pending)

    def next_seqnum(self) -> int:
        """A seqnum for the next command: never 0, never one a reply may still come for."""
        while True:
            seq = next(self._seqnums) & _SEQNUM_MASK
            if seq and seq not in self._pending and seq not in self._unlinks:
                return seq

    def add(self, seqnum: int) -> Pending:
        """Wait for the reply to the CMD_SUBMIT ``seqnum`` (already queued: it cannot fail)."""
        pending = self._pending[seqnum] = Pending()
        return pending

    def complete(self, seqnum: int, result: RetSubmit) -> None:
        """A RET_SUBMIT: settle its URB, unless it is settled or forgotten already."""
        pending = self._pending.get(seqnum)
        if pending is not None and not pending.done.is_set():
            pending.result = result
            pending.done.set()

    def unlinked(self, unlink_seqnum: int, status: int) -> None:
        """A RET_UNLINK: settle the URB its CMD_UNLINK named, unless it is already."""
        target = self._unlinks.pop(unlink_seqnum, None)
        if target is None:
            return
        pending = self._pending.get(target)
        if pending is None or pending.done.is_set():
            return
        if status != 0:
            pending.error = transfer_error(status)
        else:  # completed as the unlink arrived; the server sends no RET_SUBMIT then
            pending.result = RetSubmit(target)
        pending.done.set()

    def fail(self, error: UsbipGadgetError) -> None:
        """The connection ended: settle every URB still waiting with ``error``."""
        for pending in self._pending.values():
            if not pending.done.is_set():
                pending.error = error
                pending.done.set()

    async def send_unlink(self, seqnum: int) -> None:
        """Queue a CMD_UNLINK for the URB ``seqnum``; its RET_UNLINK goes to ``unlinked``."""
        unlink_seqnum = self.next_seqnum()
        self._unlinks[unlink_seqnum] = seqnum
        # If the connection is gone, the URB is gone with it (and was failed).
        with contextlib.suppress(UsbipGadgetError):
            self._send(CmdUnlink(unlink_seqnum, self._devid, seqnum))
        await trio.lowlevel.checkpoint()

    async def unlink(self, seqnum: int, pending: Pending) -> None:
        """Unlink the URB ``seqnum`` (``pending`` its entry), wait (bounded) for the server
        to settle it either way, then forget it."""
        with trio.move_on_after(self.unlink_timeout):
            await self.send_unlink(seqnum)
            await pending.done.wait()
        self.forget(seqnum)

    def forget(self, seqnum: int) -> None:
        """Drop the URB ``seqnum`` and its unlinks: replies to them are dropped from now on."""
        self._pending.pop(seqnum, None)
        if self._unlinks:  # rarely any: answered unlinks are dropped as they arrive
            for unlink, target in list(self._unlinks.items()):
                if target == seqnum:
                    del self._unlinks[unlink]
