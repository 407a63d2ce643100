"""Bytes from a trio stream into a protocol ``Connection``, and the socket options that
keep receiving them cheap."""

from __future__ import annotations

import socket
from collections import deque
from typing import Protocol

import trio

from usbip_gadget._net import map_transport_errors
from usbip_gadget.protocol import Message, RetSubmit, RetUnlink, Sentinel

RECEIVE_SIZE = 256 * 1024
_LOW_WATER_MIN = 4096  # below this, a wakeup costs less than the system call
_LOW_WATER_CAP = 128 * 1024


class Link(Protocol):
    """What a ``RemoteDevice`` speaks through: USB/IP's ``protocol.Connection``, or a link
    that carries the same commands over another protocol (``usbredir.GuestLink``)."""

    def receive_data(self, data: bytes | bytearray) -> None: ...

    def next_event(self) -> Message | Sentinel: ...

    def bytes_wanted(self) -> int: ...

    def send(self, message: Message) -> bytes: ...


class LocalLink(Link, Protocol):
    """A link that answers some commands itself (``send`` leaves those answers in
    ``local_events``) and sends some packets unasked (``take_output``)."""

    local_events: deque[RetSubmit | RetUnlink]

    def take_output(self) -> bytes: ...


async def receive(stream: trio.abc.ReceiveStream, conn: Link, what: str) -> None:
    """Feed ``conn`` what ``stream`` has; ``what`` names the failure (a ``TransportError``)."""
    with map_transport_errors(what):
        data = await stream.receive_some(RECEIVE_SIZE)
    conn.receive_data(data)


def socket_fileno(stream: trio.abc.Stream) -> int | None:
    """The file descriptor of a TCP stream's socket (non-blocking under trio); None else."""
    sock = getattr(stream, "socket", None)
    return sock.fileno() if isinstance(sock, trio.socket.SocketType) else None


class LowWater:
    """SO_RCVLOWAT on a TCP stream: wake the reader once a reply's data are all in.

    A large IN reply arrives in many segments; without this, each wakes the reader for a
    parse that cannot finish yet. Linux's tcp_poll reports readable only from the low-water
    mark on (or at end of stream). Streams without a socket (tests) are left alone.
    """

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        sock = getattr(stream, "socket", None)
        self._socket = sock if isinstance(sock, trio.socket.SocketType) else None
        self._value = 1

    def want(self, count: int) -> None:
        value = min(count, _LOW_WATER_CAP) if count >= _LOW_WATER_MIN else 1
        if self._socket is None or value == self._value:
            return
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, value)
        except OSError:
            self._socket = None  # not supported here; receive as data come
            return
        self._value = value
