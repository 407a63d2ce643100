"""Every rule about who may send what, and when, lives here.

A connection starts in the op phase. The *host* role is the side that submits URBs
(vhci-hcd, our bridge); the *device* role owns the device (usbipd, an exporter). In the
op phase the host asks for the device list or imports a device; in the export
("connect") direction the device side offers a device with OP_REQ_EXPORT instead. A
successful import or export switches the connection to the URB phase, in which the
host sends CMD_SUBMIT/CMD_UNLINK and the device answers RET_SUBMIT/RET_UNLINK.
"""

from __future__ import annotations

from collections import OrderedDict
from enum import Enum, auto

from usbip_gadget._errors import LocalProtocolError, RemoteProtocolError
from usbip_gadget.protocol._constants import OpCode, OpStatus
from usbip_gadget.protocol._messages import (
    CmdSubmit,
    CmdUnlink,
    DevlistReply,
    DevlistRequest,
    ExportReply,
    ExportRequest,
    ImportReply,
    ImportRequest,
    Message,
    RetSubmit,
    RetUnlink,
    UnexportReply,
    UnexportRequest,
)
from usbip_gadget.protocol._urb_codec import SubmitShape

#: How many unlinked seqnums are remembered so that a late RET_SUBMIT can be dropped.
_UNLINKED_MEMORY = 4096


class Role(Enum):
    HOST = auto()
    DEVICE = auto()


class Phase(Enum):
    OP = auto()
    URB = auto()
    CLOSED = auto()


# The reply each request waits for.
_REPLY_TO = {
    DevlistRequest: DevlistReply,
    ImportRequest: ImportReply,
    ExportRequest: ExportReply,
    UnexportRequest: UnexportReply,
}
# Which op requests each role may send.
_OP_REQUESTS_BY = {
    Role.HOST: (DevlistRequest, ImportRequest),
    Role.DEVICE: (ExportRequest, UnexportRequest),
}


class ConnectionState:
    """The state machine of one USB/IP connection, seen from ``role``."""

    def __init__(self, role: Role) -> None:
        self.role = role
        self.phase = Phase.OP
        # The request whose reply is awaited: ours (we sent it) or theirs (we must answer).
        self._awaiting: type | None = None
        self._awaiting_ours = False
        # Host role: submitted URBs and unlinks not yet answered.
        self._pending: dict[int, SubmitShape] = {}
        self._unlinks: dict[int, int] = {}
        self._unlinked: OrderedDict[int, SubmitShape] = OrderedDict()
        # Device role: seqnums received and not yet answered; unlink seqnum -> its target.
        self._inflight: set[int] = set()
        self._device_unlinks: dict[int, int] = {}

    # ------------------------------------------------------------ queries

    @property
    def pending(self) -> frozenset[int]:
        """Seqnums of submitted URBs still waiting for RET_SUBMIT (host role)."""
        return frozenset(self._pending)

    def expected_op_codes(self) -> frozenset[OpCode]:
        """The op codes that may arrive now (for detecting them in the URB phase)."""
        if self.phase is Phase.URB:
            if self.role is Role.HOST:
                return frozenset({OpCode.REQ_UNEXPORT})
            if self._awaiting is UnexportRequest and self._awaiting_ours:
                return frozenset({OpCode.REP_UNEXPORT})
        if self.phase is not Phase.OP:
            return frozenset()
        return frozenset(_OP_CODES)

    def shape_of(self, seqnum: int) -> SubmitShape:
        """How the URB answered by a RET_SUBMIT(seqnum) was submitted."""
        shape = self._pending.get(seqnum) or self._unlinked.get(seqnum)
        if shape is None:
            raise RemoteProtocolError(f"RET_SUBMIT for unknown or already answered seqnum {seqnum}")
        return shape

    def is_stale(self, message: Message) -> bool:
        """A late RET_SUBMIT for a URB whose unlink already succeeded."""
        return isinstance(message, RetSubmit) and message.seqnum not in self._pending

    # ------------------------------------------------------------ transitions

    def on_send(self, message: Message) -> None:
        try:
            self._apply(message, ours=True)
        except _Violation as exc:
            raise LocalProtocolError(f"cannot send {type(message).__name__}: {exc}") from None

    def on_receive(self, message: Message) -> None:
        try:
            self._apply(message, ours=False)
        except _Violation as exc:
            raise RemoteProtocolError(f"unexpected {type(message).__name__}: {exc}") from None

    def _apply(self, message: Message, *, ours: bool) -> None:
        if self.phase is Phase.CLOSED:
            raise _Violation("the connection is finished")
        if isinstance(message, CmdSubmit | CmdUnlink | RetSubmit | RetUnlink):
            self._apply_urb(message, ours=ours)
        else:
            self._apply_op(message, ours=ours)

    def _apply_op(self, message: Message, *, ours: bool) -> None:
        kind = type(message)
        if kind in _REPLY_TO:
            self._request(kind, ours=ours)
            return
        if self._awaiting is None or _REPLY_TO[self._awaiting] is not kind:
            raise _Violation("no request is waiting for this reply")
        if self._awaiting_ours == ours:
            raise _Violation("a reply must come from the other side")
        self._finish_request(message)

    def _request(self, kind: type, *, ours: bool) -> None:
        sender = self.role if ours else _other(self.role)
        if kind not in _OP_REQUESTS_BY[sender]:
            raise _Violation(f"the {sender.name.lower()} side does not send it")
        in_urb_unexport = self.phase is Phase.URB and kind is UnexportRequest
        if (self.phase is not Phase.OP and not in_urb_unexport) or self._awaiting is not None:
            raise _Violation("a request is already under way or the op phase is over")
        self._awaiting, self._awaiting_ours = kind, ours

    def _finish_request(self, reply: Message) -> None:
        request, self._awaiting = self._awaiting, None
        ok = getattr(reply, "status", OpStatus.OK) == OpStatus.OK
        if isinstance(reply, ExportReply):
            ok = ok and reply.returncode == 0
        opens_urb_phase = request in (ImportRequest, ExportRequest) and ok
        self.phase = Phase.URB if opens_urb_phase else Phase.CLOSED

    def _apply_urb(self, message: Message, *, ours: bool) -> None:
        if self.phase is not Phase.URB:
            raise _Violation("the URB phase has not begun")
        host_sends = isinstance(message, CmdSubmit | CmdUnlink)
        if host_sends != ((self.role is Role.HOST) == ours):
            raise _Violation("wrong side for this message")
        if self.role is Role.HOST:
            self._host_urb(message)
        else:
            self._device_urb(message)

    def _host_urb(self, message: Message) -> None:
        match message:
            case CmdSubmit(seqnum=seq):
                self._claim_seqnum(seq)
                shape = SubmitShape(
                    message.direction, message.transfer_buffer_length, message.number_of_packets
                )
                self._pending[seq] = shape
            case CmdUnlink(seqnum=seq, unlink_seqnum=target):
                self._claim_seqnum(seq)
                self._unlinks[seq] = target
            case RetSubmit(seqnum=seq):
                if self._pending.pop(seq, None) is None and self._unlinked.pop(seq, None) is None:
                    raise _Violation(f"seqnum {seq} is not pending")
            case RetUnlink(seqnum=seq, status=status):
                self._finish_unlink(seq, status)

    def _claim_seqnum(self, seq: int) -> None:
        if seq in self._pending or seq in self._unlinks:
            raise _Violation(f"seqnum {seq} is already in flight")

    def _finish_unlink(self, seq: int, status: int) -> None:
        target = self._unlinks.pop(seq, None)
        if target is None:
            raise _Violation(f"RET_UNLINK for unknown seqnum {seq}")
        # Whatever the status, no RET_SUBMIT is owed once RET_UNLINK arrives for a pending URB
        # (Linux stub_complete answers an unlink racing with completion by RET_UNLINK alone).
        shape = self._pending.pop(target, None)
        if shape is not None:
            self._unlinked[target] = shape
            while len(self._unlinked) > _UNLINKED_MEMORY:
                self._unlinked.popitem(last=False)

    def _device_urb(self, message: Message) -> None:
        match message:
            case CmdSubmit(seqnum=seq) | CmdUnlink(seqnum=seq):
                if seq in self._inflight:
                    raise _Violation(f"seqnum {seq} is already in flight")
                self._inflight.add(seq)
                if isinstance(message, CmdUnlink):
                    self._device_unlinks[seq] = message.unlink_seqnum
            case RetSubmit(seqnum=seq) | RetUnlink(seqnum=seq):
                if seq not in self._inflight:
                    raise _Violation(f"seqnum {seq} was not received or was already answered")
                self._inflight.discard(seq)
                target = self._device_unlinks.pop(seq, None)
                if target is not None and message.status != 0:
                    self._inflight.discard(target)  # unlinked: no RET_SUBMIT follows

    def close(self) -> None:
        self.phase = Phase.CLOSED


_OP_CODES = tuple(OpCode)


class _Violation(Exception):
    """Internal: a rule was broken; the caller knows whose fault it is."""


def _other(role: Role) -> Role:
    return Role.DEVICE if role is Role.HOST else Role.HOST
