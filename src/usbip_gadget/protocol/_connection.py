"""The sans-I/O connection: bytes in, events out; messages in, bytes out."""

from __future__ import annotations

from typing import Final

from usbip_gadget._errors import RemoteProtocolError
from usbip_gadget.protocol._constants import (
    DEFAULT_MAX_TRANSFER,
    URB_HEADER_SIZE,
    USBIP_VERSION,
)
from usbip_gadget.protocol._messages import (
    CmdSubmit,
    CmdUnlink,
    Message,
    RetSubmit,
    RetUnlink,
)
from usbip_gadget.protocol._op_codec import pack_op, parse_op, peek_op_code
from usbip_gadget.protocol._state import ConnectionState, Phase, Role
from usbip_gadget.protocol._urb_codec import pack_urb, parse_cmd, parse_ret, ret_length


class Sentinel:
    """NEED_DATA and CLOSED: the non-message results of ``next_event``."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: ``next_event()``: the buffer holds no complete message yet.
NEED_DATA: Final = Sentinel("NEED_DATA")
#: ``next_event()``: the peer closed the connection at a message boundary.
CLOSED: Final = Sentinel("CLOSED")

Event = Message | Sentinel


class Connection:
    """One USB/IP connection, as seen from ``role``.

    Feed received bytes to ``receive_data`` (``b""`` for end of stream) and pull messages
    with ``next_event``; turn messages into bytes with ``send``. Protocol violations raise
    ``RemoteProtocolError`` (theirs) or ``LocalProtocolError`` (ours).
    """

    def __init__(self, role: Role, *, max_transfer: int = DEFAULT_MAX_TRANSFER) -> None:
        self.state = ConnectionState(role)
        self.max_transfer = max_transfer
        self._buffer = bytearray()
        self._eof = False

    @property
    def role(self) -> Role:
        return self.state.role

    @property
    def phase(self) -> Phase:
        return self.state.phase

    def send(self, message: Message) -> bytes:
        """Check ``message`` against the state rules and return its bytes."""
        if isinstance(message, CmdSubmit | CmdUnlink | RetSubmit | RetUnlink):
            data = pack_urb(message, max_transfer=self.max_transfer)
        else:
            data = pack_op(message)
        self.state.on_send(message)
        return data

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add received bytes; ``b""`` means the peer closed its end."""
        if self._eof and data:
            raise RemoteProtocolError("data received after end of stream")
        if data:
            self._buffer += data
        else:
            self._eof = True

    def next_event(self) -> Event:
        """The next complete message, ``NEED_DATA`` or ``CLOSED``."""
        while True:
            parsed = self._parse()
            if parsed is None:
                return self._at_buffer_end()
            message, consumed = parsed
            del self._buffer[:consumed]
            stale = self.state.is_stale(message)
            self.state.on_receive(message)
            if not stale:
                return message

    def bytes_wanted(self) -> int:
        """How many more bytes the next message needs at least (a hint for receiving; >= 1)."""
        if self.state.role is not Role.HOST or self.state.phase is not Phase.URB:
            return 1
        if self._op_message_ahead():
            return 1
        total = ret_length(self._buffer, self.state.shape_of)
        return max(1, (total or URB_HEADER_SIZE) - len(self._buffer))

    def _at_buffer_end(self) -> Event:
        if not self._eof:
            return NEED_DATA
        if self._buffer:
            raise RemoteProtocolError(
                f"connection closed in the middle of a message ({len(self._buffer)} bytes left)"
            )
        self.state.close()
        return CLOSED

    def _parse(self) -> tuple[Message, int] | None:
        phase = self.state.phase
        if phase is Phase.CLOSED:
            if self._buffer:
                raise RemoteProtocolError("data received after the connection was finished")
            return None
        if phase is Phase.OP or self._op_message_ahead():
            return parse_op(self._buffer)
        if self.state.role is Role.HOST:
            return parse_ret(self._buffer, self.state.shape_of)
        return parse_cmd(self._buffer, max_transfer=self.max_transfer)

    def _op_message_ahead(self) -> bool:
        """In the URB phase of an exported connection, OP_REQ/REP_UNEXPORT may arrive."""
        if len(self._buffer) < 4 or not self.state.expected_op_codes():
            return False
        if int.from_bytes(self._buffer[:2], "big") != USBIP_VERSION:
            return False
        code = peek_op_code(self._buffer[:8]) if len(self._buffer) >= 8 else None
        return code is None or code in self.state.expected_op_codes()
