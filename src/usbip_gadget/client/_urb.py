"""A URB posted to a remote device, and its completion."""

from __future__ import annotations

import math
from dataclasses import dataclass

import trio

from usbip_gadget._errors import UsbipTimeout, transfer_error
from usbip_gadget.client._urb_table import Pending, UrbTable
from usbip_gadget.protocol import CmdSubmit, IsoPacket


@dataclass(frozen=True, slots=True)
class UrbResult:
    """A completed URB: its status (0 or a negated errno) and what came back."""

    status: int
    actual_length: int
    data: bytes
    start_frame: int = 0
    error_count: int = 0
    iso_packets: tuple[IsoPacket, ...] = ()


class DeadlineExpired(UsbipTimeout):
    """``Urb.wait``'s deadline passed (not the connection's failure)."""


class Urb:
    """A URB sent to the server: wait for its completion, or unlink it."""

    __slots__ = ("_pending", "_table", "cmd")

    def __init__(self, table: UrbTable, cmd: CmdSubmit, pending: Pending) -> None:
        self._table = table
        self._pending = pending
        self.cmd = cmd

    @property
    def settled(self) -> bool:
        """Whether a reply (or the end of the connection) has settled it."""
        return self._pending.done.is_set()

    @property
    def succeeded(self) -> bool:
        """Whether it is settled by a RET_SUBMIT of status 0 (``wait`` then returns at once)."""
        pending = self._pending
        return (
            pending.done.is_set()
            and pending.error is None
            and pending.result is not None
            and pending.result.status == 0
        )

    async def settle(self) -> None:
        """Wait until a reply settles it; being cancelled here unlinks nothing."""
        await self._pending.done.wait()

    def settled_with(self) -> tuple[int, bytes] | None:
        """The status and data of the RET_SUBMIT that settled it, if one did."""
        result = self._pending.result
        if result is None or self._pending.error is not None:
            return None
        return result.status, result.data

    def result(self) -> UrbResult:
        """The completion of a settled URB (see ``settled``), at once; forgets the URB."""
        pending = self._pending
        if not pending.done.is_set():
            raise RuntimeError("the URB is not settled yet")
        self._table.forget(self.cmd.seqnum)
        if pending.error is not None:
            raise pending.error.with_traceback(None)
        ret = pending.result
        assert ret is not None
        return UrbResult(
            ret.status, ret.actual_length, ret.data, ret.start_frame, ret.error_count,
            ret.iso_packets,
        )  # fmt: skip

    async def wait(self, *, deadline: float = math.inf, check: bool = False) -> UrbResult:
        """The URB's completion; at ``deadline`` (trio time) it is unlinked → ``UsbipTimeout``.

        If the wait is cancelled the URB is unlinked first (shielded, bounded). With ``check``
        a non-zero status raises the matching ``TransferError``.
        """
        pending, cmd, table = self._pending, self.cmd, self._table
        unlinked = False
        try:
            if deadline == math.inf:
                await pending.done.wait()
            else:
                with trio.move_on_at(deadline):
                    await pending.done.wait()
            if not pending.done.is_set():
                unlinked = True
                await table.unlink(cmd.seqnum, pending)
                if pending.result is None:
                    raise DeadlineExpired(f"transfer on endpoint {cmd.ep} timed out")
        finally:
            if not unlinked and not pending.done.is_set():
                with trio.CancelScope(shield=True):
                    await table.unlink(cmd.seqnum, pending)
            table.forget(cmd.seqnum)
        if pending.error is not None:
            raise pending.error.with_traceback(None)
        assert pending.result is not None
        ret = pending.result
        if check and ret.status != 0:
            raise transfer_error(ret.status)
        return UrbResult(
            ret.status, ret.actual_length, ret.data, ret.start_frame, ret.error_count,
            ret.iso_packets,
        )  # fmt: skip
