"""Connections notice a vanished peer in about 30 s, not Linux's default two hours."""

from __future__ import annotations

import functools
import socket

import pytest
import trio

from usbip_gadget.client import open_connection

pytestmark = pytest.mark.timeout(30)


async def test_open_connection_sets_short_keepalive() -> None:
    async def idle(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            serve = functools.partial(trio.serve_tcp, idle, 0, host="127.0.0.1")
            listeners = await nursery.start(serve)
            port = listeners[0].socket.getsockname()[1]
            stream = await open_connection("127.0.0.1", port, timeout=5)
            async with stream:
                sock = stream.socket
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 15
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 5
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            nursery.cancel_scope.cancel()
