"""Receiving large replies over real TCP with the reader's low-water mark."""

from __future__ import annotations

import functools
import socket

import pytest
import trio

from tests.client.fakes import FakeServer, disk
from usbip_gadget.client import open_remote_device
from usbip_gadget.client._stream import LowWater
from usbip_gadget.protocol import CmdSubmit, Direction, RetSubmit

pytestmark = pytest.mark.timeout(30)


async def test_the_mark_follows_what_the_reader_wants() -> None:
    ours, theirs = trio.socket.socketpair()
    with ours, theirs:
        low_water = LowWater(trio.SocketStream(ours))

        def mark() -> int:
            return ours.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)

        low_water.want(100_000)
        assert mark() == 100_000
        low_water.want(10_000_000)
        assert mark() == 128 * 1024
        low_water.want(48)
        assert mark() == 1


async def test_a_large_reply_sent_in_pieces_over_tcp_arrives_whole() -> None:
    payload = bytes(i % 251 for i in range(300_000))

    def answer(cmd: CmdSubmit) -> RetSubmit:
        return RetSubmit(cmd.seqnum, actual_length=len(payload), data=payload)

    server = FakeServer([disk()], handler=answer)

    async def serve_in_pieces(stream: trio.SocketStream) -> None:
        class Slow:  # hands the server's bytes to TCP 7 kB at a time, with pauses
            async def send_all(self, data: bytes) -> None:
                for i in range(0, len(data), 7000):
                    await stream.send_all(data[i : i + 7000])
                    await trio.sleep(0.001)

            async def receive_some(self, size: int) -> bytes:
                return await stream.receive_some(size)

        await server.serve(Slow())  # type: ignore[arg-type]

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            serve = functools.partial(trio.serve_tcp, serve_in_pieces, 0, host="127.0.0.1")
            listeners = await nursery.start(serve)
            port = listeners[0].socket.getsockname()[1]
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream, open_remote_device(stream, "1-2") as remote:
                for _ in range(3):
                    result = await remote.submit(1, Direction.IN, 400_000)
                    assert result.data == payload
            nursery.cancel_scope.cancel()
