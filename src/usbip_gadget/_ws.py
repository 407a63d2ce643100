"""USB/IP carried in binary WebSocket messages, for networks that let only HTTP(S) out.

``WebSocketStream`` is a ``trio.abc.Stream`` of the bytes those messages carry, so the
server and the bridge above it do not know the transport. The framing is wsproto's (no I/O
of its own, like the ``protocol`` room); message boundaries mean nothing here, since USB/IP
messages carry their own lengths.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import ProtocolError

from usbip_gadget._errors import TransportError, UsbipTimeout

#: Offered by the dialing side and echoed by ``listen``; informative, not required.
SUBPROTOCOL = "usbip"
_RECEIVE_SIZE = 256 * 1024
# A close frame is a courtesy: a peer that takes nothing does not hold our aclose longer.
_CLOSE_TIMEOUT_S = 1.0
_SHOWN_PATH = 80
# Ends that mean "the peer is done", as a TCP EOF does; anything else is a broken stream.
_CLEAN_CLOSE = (CloseReason.NORMAL_CLOSURE, CloseReason.GOING_AWAY, CloseReason.ABNORMAL_CLOSURE)


class WebSocketStream(trio.abc.Stream):
    """The bytes of the binary messages on an open WebSocket connection over ``stream``.

    Each ``send_all`` is one message. Pings are answered and a close is returned from the
    receiving side, so sends share a lock. Text messages and protocol errors break it.
    """

    def __init__(self, stream: trio.abc.Stream, ws: WSConnection) -> None:
        self._stream = stream
        self._ws = ws
        self._received: deque[bytes] = deque()
        self._eof = False
        self._send_lock = trio.Lock()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._ws.state is not ConnectionState.OPEN:
            raise trio.BrokenResourceError("the WebSocket connection is closing")
        await self._send(self._ws.send(BytesMessage(data=bytes(data))))

    async def _send(self, frame: bytes) -> None:
        async with self._send_lock:
            await self._stream.send_all(frame)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._received:
            if self._eof:
                await trio.lowlevel.checkpoint()
                return b""
            await self._receive_frames()
        data = self._received.popleft()
        if max_bytes is not None and len(data) > max_bytes:
            self._received.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        return data

    async def _receive_frames(self) -> None:
        data = await self._stream.receive_some(_RECEIVE_SIZE)
        self._ws.receive_data(bytes(data) if data else None)  # None: the TCP stream ended
        for event in self._ws.events():
            await self._handle(event)

    async def _handle(self, event: Event) -> None:
        if isinstance(event, BytesMessage):
            if event.data:
                self._received.append(bytes(event.data))
        elif isinstance(event, Ping):
            if self._ws.state is ConnectionState.OPEN:  # no pong after a close frame
                await self._send(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            self._eof = True
            if self._ws.state is ConnectionState.REMOTE_CLOSING:
                await self._send(self._ws.send(event.response()))
            if event.code not in _CLEAN_CLOSE:
                raise trio.BrokenResourceError(f"WebSocket closed: {event.code} {event.reason}")
        elif isinstance(event, TextMessage):
            raise trio.BrokenResourceError("a WebSocket text message: USB/IP is binary")

    async def aclose(self) -> None:
        try:
            if self._ws.state is ConnectionState.OPEN and not self._send_lock.locked():
                frame = self._ws.send(CloseConnection(code=CloseReason.NORMAL_CLOSURE))
                with trio.move_on_after(_CLOSE_TIMEOUT_S):
                    await self._send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer is gone already: nothing to tell it
        finally:
            await self._stream.aclose()


async def ws_connect(
    stream: trio.abc.Stream, *, host: str, path: str, peer: str, timeout: float
) -> WebSocketStream:
    """Open a WebSocket for ``path`` on ``stream`` (``host``: the Host header).

    ``TransportError`` if the peer refuses or breaks the handshake, ``UsbipTimeout`` if it
    takes longer than ``timeout``.
    """
    ws = WSConnection(ConnectionType.CLIENT)
    what = f"WebSocket handshake with {peer} for {path}"
    with trio.move_on_after(timeout), _mapped(what):
        await stream.send_all(ws.send(Request(host=host, target=path, subprotocols=[SUBPROTOCOL])))
        event = await _next_event(stream, ws, what)
        if isinstance(event, AcceptConnection):
            return WebSocketStream(stream, ws)
        if isinstance(event, RejectConnection):
            raise TransportError(f"{what} refused: HTTP {event.status_code}")
        raise TransportError(f"{what} failed: answered {type(event).__name__}")
    raise UsbipTimeout(f"{what}: no answer within {timeout:g} s")


async def ws_accept(
    stream: trio.abc.Stream, *, path: str, peer: str, timeout: float
) -> WebSocketStream:
    """Accept a WebSocket for ``path`` on ``stream``; any other request is answered with an
    HTTP error and raises ``TransportError`` (``UsbipTimeout`` after ``timeout``)."""
    ws = WSConnection(ConnectionType.SERVER)
    what = f"WebSocket handshake with {peer}"
    with trio.move_on_after(timeout), _mapped(what):
        try:
            event = await _next_event(stream, ws, what)
        except ProtocolError as exc:
            await stream.send_all(_BAD_REQUEST)
            raise TransportError(f"{what} failed: {exc}") from None
        assert isinstance(event, Request)  # the only event a server's handshake makes
        target = event.target.partition("?")[0]
        if target != path:
            await stream.send_all(ws.send(RejectConnection(status_code=404)))
            asked = target[:_SHOWN_PATH]  # the peer chose it: the log gets a bounded piece
            raise TransportError(f"{what} failed: asked for {asked!r}, not {path!r}")
        chosen = SUBPROTOCOL if SUBPROTOCOL in event.subprotocols else None
        await stream.send_all(ws.send(AcceptConnection(subprotocol=chosen)))
        return WebSocketStream(stream, ws)
    raise UsbipTimeout(f"{what}: no request within {timeout:g} s")


_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


async def _next_event(stream: trio.abc.Stream, ws: WSConnection, what: str) -> Event:
    """The first handshake event, reading as needed (wsproto's ``ProtocolError`` if the
    HTTP is malformed)."""
    while (event := next(ws.events(), None)) is None:
        data = await stream.receive_some(_RECEIVE_SIZE)
        if not data:
            raise TransportError(f"{what} failed: the peer closed the connection")
        ws.receive_data(bytes(data))
    return event


@contextmanager
def _mapped(what: str) -> Iterator[None]:
    try:
        yield
    except ProtocolError as exc:
        raise TransportError(f"{what} failed: {exc}") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise TransportError(f"{what} failed: connection lost") from None
