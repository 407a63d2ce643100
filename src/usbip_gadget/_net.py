"""TCP at the edge, for both sides: trio and OS errors become ours here, and nowhere else.

A ``Transport`` says what rides on the TCP connection: USB/IP itself (the default, what
Linux's ``usbipd`` and ``usbip`` speak), mutual TLS (``_tls``), WebSocket messages (``_ws``),
or WebSocket over mutual TLS. ``dial`` and ``accept`` do the handshakes, with deadlines, and
hand the layers above an already wrapped ``trio.abc.Stream``.

Listening too: ``serve_capped`` accepts connections for ``serve`` and ``listen`` within
``ConnectionLimits``, so that no peer can take every file descriptor or every slot.
"""

from __future__ import annotations

import errno
import os
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit

import trio

from usbip_gadget._errors import TransportError, UsbipGadgetError, UsbipTimeout
from usbip_gadget._tls import Tls, load_tls, tls_handshake
from usbip_gadget._ws import ws_accept, ws_connect
from usbip_gadget.protocol import DEFAULT_PORT


@contextmanager
def map_transport_errors(what: str) -> Iterator[None]:
    """Turn trio's and the OS's exceptions raised while doing ``what`` into ``TransportError``."""
    try:
        yield
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise TransportError(f"{what}: connection lost") from None
    except OSError as exc:
        raise TransportError(f"{what}: {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    """The OS's words for ``exc``, looking inside trio's "all attempts failed" groups."""
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    cause = exc.__cause__
    if exc.errno is None and isinstance(cause, BaseExceptionGroup):
        inner = [e for e in cause.exceptions if isinstance(e, OSError) and e.errno is not None]
        if inner:
            exc = inner[-1]
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc) or os.strerror(errno.EIO)


def parse_address(address: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]`` or ``[V6]:PORT`` → (host, port)."""
    host, port_text = address, ""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port_text = rest.removeprefix(":") if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise UsbipGadgetError(f"invalid address {address!r}")
    elif address.count(":") == 1:
        host, port_text = address.split(":")
    if not host:
        raise UsbipGadgetError(f"invalid address {address!r}: no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsbipGadgetError(f"invalid port {port_text!r} in {address!r}")
    return host, int(port_text)


# A peer that vanished (power cut, NAT mapping gone) is noticed after about 30 s of silence
# instead of Linux's default two hours: an idle device (a keyboard nobody types on) sends
# nothing that would notice it otherwise, and holds the device or the controller meanwhile.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES = 15, 5, 3


def keep_alive(stream: trio.SocketStream) -> None:
    """TCP keepalive on ``stream`` with the timings above (where the platform has them)."""
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
    ):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    for level, option, value in options:
        try:
            stream.setsockopt(level, option, value)
        except OSError:
            return  # already reset by the peer: the next read or write will say so


def format_address(address: object) -> str:
    """``host:port`` (``[v6]:port``) of a socket address."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


def accepted_peer(stream: trio.abc.Stream) -> str:
    """An accepted connection's peer, for the log; TCP ones get ``keep_alive`` on the way."""
    if not isinstance(stream, trio.SocketStream):
        return "peer"
    try:
        keep_alive(stream)
        return format_address(stream.socket.getpeername())
    except OSError:
        return "?"  # already reset by the peer: its first read will say so


async def open_connection(host: str, port: int, *, timeout: float) -> trio.SocketStream:
    """Connect to a USB/IP server within ``timeout`` seconds (with ``keep_alive``)."""
    what = f"cannot connect to {host}:{port}"
    with trio.move_on_after(timeout) as scope, map_transport_errors(what):
        stream = await trio.open_tcp_stream(host, port)
        keep_alive(stream)
        return stream
    assert scope.cancelled_caught
    raise UsbipTimeout(f"{what}: no answer within {timeout:g} s")


@dataclass(frozen=True, slots=True)
class Transport:
    """What rides on TCP: ``tls`` (mutual TLS when set), then, when ``websocket`` names a
    resource path ("/usbip"), WebSocket binary messages; USB/IP straight on TCP by default."""

    tls: Tls | None = None
    websocket: str | None = None

    def describe(self) -> str:
        """``TCP``, ``TLS``, ``ws`` or ``wss``: for the log."""
        if self.websocket is not None:
            return "wss" if self.tls else "ws"
        return "TLS" if self.tls else "TCP"


PLAIN = Transport()


async def dial(
    host: str, port: int, *, timeout: float, transport: Transport = PLAIN
) -> trio.abc.Stream:
    """``open_connection``, then ``transport``'s handshakes, each within ``timeout``."""
    tcp = await open_connection(host, port, timeout=timeout)
    stream: trio.abc.Stream = tcp
    peer = format_address((host, port))
    try:
        if transport.tls is not None:
            stream = await tls_handshake(
                stream, transport.tls, peer=peer, host=host, timeout=timeout
            )
        if transport.websocket is not None:
            path = transport.websocket
            stream = await ws_connect(stream, host=peer, path=path, peer=peer, timeout=timeout)
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return stream


async def accept(
    stream: trio.abc.Stream, transport: Transport, *, peer: str, timeout: float
) -> trio.abc.Stream:
    """An accepted connection from ``peer`` with ``transport``'s handshakes done, each within
    ``timeout``. ``TransportError`` or ``UsbipTimeout`` if one fails: no USB/IP byte has been
    read or written then, and the caller closes ``stream``."""
    if transport.tls is not None:
        stream = await tls_handshake(stream, transport.tls, peer=peer, host="", timeout=timeout)
    if transport.websocket is not None:
        stream = await ws_accept(stream, path=transport.websocket, peer=peer, timeout=timeout)
    return stream


async def accept_or_refuse(
    stream: trio.abc.Stream, transport: Transport, *, timeout: float, log: Callable[[str], None]
) -> tuple[trio.abc.Stream, str] | None:
    """``accept`` a new connection: the wrapped stream and its peer's address, or None when
    the peer failed a handshake (logged in one line, its connection closed)."""
    peer = accepted_peer(stream)
    try:
        return await accept(stream, transport, peer=peer, timeout=timeout), peer
    except UsbipGadgetError as exc:
        log(f"refused: {exc.one_line()}")
        await trio.aclose_forcefully(stream)
        return None


@dataclass(frozen=True, slots=True)
class WebSocketUrl:
    """``ws://HOST[:PORT]/PATH`` or ``wss://…`` (ports 80 and 443 by default)."""

    secure: bool
    host: str
    port: int
    path: str


def parse_ws_url(url: str) -> WebSocketUrl:
    """``ws://`` or ``wss://`` URL → its parts; ``UsbipGadgetError`` if it is not one."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise UsbipGadgetError(f"invalid WebSocket URL {url!r}: ws://HOST[:PORT]/PATH or wss://…")
    try:
        port = parts.port
    except ValueError:
        raise UsbipGadgetError(f"invalid port in {url!r}") from None
    secure = parts.scheme == "wss"
    path = parts.path or "/"
    return WebSocketUrl(secure, parts.hostname, port or (443 if secure else 80), path)


# ---------------------------------------------------------------------------- listening

DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_MAX_PER_ADDRESS = 8
#: accept(2) failures that mean "no descriptor or buffer now", not a broken listener.
_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
#: How long accepting pauses after such a failure: the backlog waits in the kernel meanwhile.
ACCEPT_BACKOFF_S = 0.1
#: A burst of refusals ends after this long without one; the next is logged again.
BURST_QUIET_S = 5.0

Handler = Callable[[trio.SocketStream], Awaitable[object]]
Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How many connections a listener holds at once: in all, and from one peer address.

    A connection over either cap is closed as soon as it is accepted.
    """

    total: int = DEFAULT_MAX_CONNECTIONS
    per_address: int = DEFAULT_MAX_PER_ADDRESS


class _Burst:
    """Logs the first of a burst of like events; the rest, until a quiet spell, are not."""

    def __init__(self, log: Log) -> None:
        self._log = log
        self._last: float | None = None

    def note(self, message: str) -> None:
        now = trio.current_time()
        if self._last is None or now - self._last > BURST_QUIET_S:
            self._log(f"{message} (like ones are not logged until {BURST_QUIET_S:g} s pass)")
        self._last = now


class _Gate:
    """The connections open now, by peer address, against the limits."""

    def __init__(self, limits: ConnectionLimits, log: Log) -> None:
        self.limits = limits
        self.open: Counter[str] = Counter()
        self.refused = _Burst(log)
        self.exhausted = _Burst(log)

    def admit(self, address: str) -> bool:
        limits = self.limits
        if self.open.total() >= limits.total:
            self.refused.note(f"refused a connection from {address}: {limits.total} open")
        elif self.open[address] >= limits.per_address:
            self.refused.note(
                f"refused a connection from {address}: {limits.per_address} open from there"
            )
        else:
            self.open[address] += 1
            return True
        return False

    async def run(self, handler: Handler, stream: trio.SocketStream, address: str) -> None:
        try:
            await handler(stream)
        finally:
            self.open[address] -= 1
            if not self.open[address]:
                del self.open[address]
            await trio.aclose_forcefully(stream)


def _peer_address(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:
        return "?"  # reset already: counted under one name, and gone at its first read


async def _accept_loop(
    listener: trio.abc.Listener[trio.SocketStream],
    gate: _Gate,
    handler: Handler,
    nursery: trio.Nursery,
) -> NoReturn:
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                gate.exhausted.note(f"cannot accept connections now: {_reason(exc)}")
                await trio.sleep(ACCEPT_BACKOFF_S)
                continue
            address = _peer_address(stream)
            if gate.admit(address):
                nursery.start_soon(gate.run, handler, stream, address)
            else:
                await trio.aclose_forcefully(stream)


async def serve_capped(
    handler: Handler,
    listeners: Sequence[trio.abc.Listener[trio.SocketStream]],
    *,
    limits: ConnectionLimits,
    log: Log,
) -> None:
    """``trio.serve_listeners`` within ``limits``: a connection over a cap is closed at once,
    and running out of descriptors pauses accepting briefly; each logged once per burst.
    Each connection is closed when ``handler`` returns."""
    gate = _Gate(limits, log)
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_loop, listener, gate, handler, nursery)


__all__ = [
    "ACCEPT_BACKOFF_S",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_PER_ADDRESS",
    "PLAIN",
    "ConnectionLimits",
    "Tls",
    "Transport",
    "WebSocketUrl",
    "accept",
    "accept_or_refuse",
    "accepted_peer",
    "dial",
    "format_address",
    "keep_alive",
    "load_tls",
    "map_transport_errors",
    "open_connection",
    "parse_address",
    "parse_ws_url",
    "serve_capped",
]
