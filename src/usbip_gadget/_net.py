"""TCP at the edge, for both sides: trio and OS errors become ours here, and nowhere else."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from usbip_gadget._errors import TransportError, UsbipGadgetError, UsbipTimeout
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
