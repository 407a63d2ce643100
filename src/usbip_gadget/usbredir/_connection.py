"""The sans-I/O usbredir connection: bytes in, packets out; packets in, bytes out.

Both sides open with hello. Until the peer's hello has arrived nothing else may be sent
(the peer may switch to 64-bit ids the moment it reads ours) and nothing else is accepted;
from then on the header and the packets take the forms both sides announced. A second
hello from the peer is dropped, as usbredirparser drops it.
"""

from __future__ import annotations

import struct

from usbip_gadget._errors import LocalProtocolError, RemoteProtocolError
from usbip_gadget.protocol import CLOSED, NEED_DATA, Sentinel
from usbip_gadget.usbredir._codec import (
    HELLO_FORMS,
    carries_data,
    header_size,
    pack_body,
    packet_class,
    parse_body,
)
from usbip_gadget.usbredir._constants import (
    MAX_CAP_WORDS,
    MAX_PACKET_LENGTH,
    VERSION_SIZE,
    Cap,
    PacketType,
    Role,
)
from usbip_gadget.usbredir._forms import Forms, sender_may_send
from usbip_gadget.usbredir._messages import Hello, Packet

_HEADER = struct.Struct("<III")
_HEADER_64 = struct.Struct("<IIQ")
#: What this side announces unless told otherwise: every capability the codec speaks.
ALL_CAPS = frozenset(Cap)

Event = Packet | Sentinel


class Connection:
    """One usbredir connection as seen from ``role``, announcing ``caps``.

    ``send(Hello(...))`` first (``hello()`` builds ours); then ``receive_data``/``next_event``
    until the peer's hello arrives (``peer_caps`` is set), and only then anything else.
    """

    def __init__(
        self, role: Role, *, caps: frozenset[int] = ALL_CAPS, version: str = "usbip-gadget"
    ) -> None:
        self.role = role
        self.caps = caps
        self.version = version
        self.peer_caps: frozenset[int] | None = None
        self.peer_version: str | None = None
        self._hello_sent = False
        self._forms = HELLO_FORMS
        self._buffer = bytearray()
        self._eof = False

    @property
    def peer(self) -> Role:
        return Role.GUEST if self.role is Role.HOST else Role.HOST

    @property
    def forms(self) -> Forms:
        """The forms in use (before the peer's hello: no capability shared)."""
        return self._forms

    def has(self, cap: Cap) -> bool:
        """Whether both sides announced ``cap``."""
        return self._forms.both(cap)

    def hello(self) -> bytes:
        """Our hello's bytes."""
        return self.send(Hello(self.version, self.caps))

    def send(self, packet: Packet) -> bytes:
        """The bytes of ``packet``; ``LocalProtocolError`` if it breaks a rule or comes out
        of turn."""
        if isinstance(packet, Hello):
            if self._hello_sent:
                raise LocalProtocolError("hello was sent already")
            if packet.caps != self.caps:
                raise LocalProtocolError("hello must announce the connection's capabilities")
            self._hello_sent = True
            body = pack_body(packet, self.role, HELLO_FORMS)
            return _HEADER.pack(packet.TYPE, len(body), packet.id) + body
        if not self._hello_sent or self.peer_caps is None:
            raise LocalProtocolError(f"{packet.TYPE.name.lower()} before both hellos")
        body = pack_body(packet, self.role, self._forms)
        if len(body) > MAX_PACKET_LENGTH:
            raise LocalProtocolError(f"{packet.TYPE.name.lower()}: {len(body)} bytes")
        layout = _HEADER_64 if self._forms.ids_64bit else _HEADER
        try:
            return layout.pack(packet.TYPE, len(body), packet.id) + body
        except struct.error:
            raise LocalProtocolError(f"id {packet.id} does not fit the header") from None

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add received bytes; ``b""`` means the peer closed its end."""
        if self._eof and data:
            raise RemoteProtocolError("data received after end of stream")
        if data:
            self._buffer += data
        else:
            self._eof = True

    def bytes_wanted(self) -> int:
        """How many more bytes complete the packet being received (at least 1)."""
        layout = _HEADER_64 if self._forms.ids_64bit else _HEADER
        have = len(self._buffer)
        if have < layout.size:
            return layout.size - have
        length: int = layout.unpack_from(self._buffer)[1]
        return max(1, layout.size + length - have)

    def next_event(self) -> Event:
        """The next complete packet, ``NEED_DATA`` or ``CLOSED``."""
        while True:
            parsed = self._parse()
            if parsed is None:
                return self._at_buffer_end()
            packet, consumed = parsed
            del self._buffer[:consumed]
            if isinstance(packet, Hello):
                if self.peer_caps is not None:
                    continue  # a second hello: dropped
                self.peer_caps, self.peer_version = packet.caps, packet.version
                self._forms = Forms(self.caps, packet.caps)
            return packet

    def _at_buffer_end(self) -> Event:
        if not self._eof:
            return NEED_DATA
        if self._buffer:
            raise RemoteProtocolError(
                f"connection closed in the middle of a packet ({len(self._buffer)} bytes left)"
            )
        return CLOSED

    def _parse(self) -> tuple[Packet, int] | None:
        layout = _HEADER_64 if self._forms.ids_64bit else _HEADER
        if len(self._buffer) < layout.size:
            return None
        kind_number, length, packet_id = layout.unpack_from(self._buffer)
        kind = self._check_header(kind_number, length)
        total = layout.size + length
        if len(self._buffer) < total:
            return None
        # A copy: no view into the buffer may outlive this call (an error's traceback keeps
        # its frames, and a view would stop the buffer from growing).
        body = memoryview(bytes(self._buffer[layout.size : total]))
        return parse_body(kind, packet_id, body, self.peer, self._forms), total

    def _check_header(self, kind_number: int, length: int) -> PacketType:
        """The packet type, once the header's type and length pass every rule."""
        if packet_class(kind_number) is None:
            raise RemoteProtocolError(f"unknown packet type {kind_number}")
        kind = PacketType(kind_number)
        name = kind.name.lower()
        if not sender_may_send(self.peer, kind):
            raise RemoteProtocolError(f"{name} sent by the usb-{self.peer.name.lower()}")
        if kind is not PacketType.HELLO and self.peer_caps is None:
            raise RemoteProtocolError(f"{name} before the peer's hello")
        if length > MAX_PACKET_LENGTH:
            raise RemoteProtocolError(f"{name}: length {length} over {MAX_PACKET_LENGTH}")
        if kind is PacketType.HELLO:
            if not VERSION_SIZE <= length <= VERSION_SIZE + 4 * MAX_CAP_WORDS:
                raise RemoteProtocolError(f"hello: length {length}")
            return kind
        size = header_size(kind, self._forms)
        assert size is not None
        if length < size or (length > size and not carries_data(kind)):
            raise RemoteProtocolError(f"{name}: length {length} for a {size}-byte header")
        return kind
