"""USB/IP in WebSocket binary messages: the stream adapter against a raw wsproto peer, the
handshakes' refusals, and ``connect`` → ``listen`` over wss on real localhost TCP."""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from tests.net.beds import Log
from tests.net.certs import Certs
from tests.server.harness import DISK_IN, DISK_OUT, disk
from tests.usb.vectors import MASS_STORAGE_DEVICE
from usbip_gadget._errors import TransportError, UsbipTimeout
from usbip_gadget._groups import collapse_single
from usbip_gadget._net import Transport, parse_ws_url
from usbip_gadget._ws import WebSocketStream, ws_accept, ws_connect
from usbip_gadget.bridge._attach import Plug
from usbip_gadget.bridge._listen import Listener, ListenOptions
from usbip_gadget.client import RemoteDevice
from usbip_gadget.server import connect
from usbip_gadget.testing import FakeDevice, FakeSource
from usbip_gadget.usb import DescriptorType, SetupPacket

pytestmark = pytest.mark.timeout(30)

LOOPBACK = "127.0.0.1"
PATH = "/usbip"


class RawPeer:
    """A WebSocket client made of wsproto alone, to send what our stream must cope with."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)

    async def send(self, event: Event) -> None:
        await self.stream.send_all(self.ws.send(event))

    async def next_event(self) -> Event:
        while (event := next(self.ws.events(), None)) is None:
            self.ws.receive_data(bytes(await self.stream.receive_some(65536)) or None)
        return event


async def _accepted_by_raw_peer() -> tuple[WebSocketStream, RawPeer]:
    """Our accepting side with a raw wsproto client that completed the handshake."""
    theirs, ours = trio.testing.memory_stream_pair()
    peer = RawPeer(theirs)
    await peer.send(Request(host="gadget", target=PATH, subprotocols=["usbip"]))
    stream = await ws_accept(ours, path=PATH, peer="peer", timeout=5)
    assert await peer.next_event() == AcceptConnection(subprotocol="usbip")
    return stream, peer


async def _receive_exactly(stream: trio.abc.ReceiveStream, count: int) -> bytes:
    received = b""
    while len(received) < count:
        data = await stream.receive_some(7000)
        assert data, "ended early"
        received += data
    return received


async def test_bytes_cross_in_both_directions() -> None:
    gadget_end, device_end = trio.testing.lockstep_stream_pair()
    payload = bytes(range(256)) * 4096  # 1 MiB, one message
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            accepting = partial(ws_accept, gadget_end, path=PATH, peer="device", timeout=5)
            accepted: list[WebSocketStream] = []

            async def accept() -> None:
                accepted.append(await accepting())

            nursery.start_soon(accept)
            dialed = await ws_connect(device_end, host="gadget", path=PATH, peer="g", timeout=5)
            nursery.start_soon(dialed.send_all, payload)
            await trio.testing.wait_all_tasks_blocked()
            (server,) = accepted
            assert await _receive_exactly(server, len(payload)) == payload
            nursery.start_soon(server.send_all, b"\x01\x11\x00\x05")
            assert await _receive_exactly(dialed, 4) == b"\x01\x11\x00\x05"


async def test_pings_are_answered_and_fragments_joined() -> None:
    with trio.fail_after(10):
        stream, peer = await _accepted_by_raw_peer()
        await peer.send(Ping(payload=b"alive?"))
        await peer.send(BytesMessage(data=b"abc", message_finished=False))
        await peer.send(BytesMessage(data=b"def", message_finished=True))
        assert await _receive_exactly(stream, 6) == b"abcdef"
        assert await peer.next_event() == Pong(payload=b"alive?")


async def test_a_close_is_an_end_of_stream_and_is_returned() -> None:
    with trio.fail_after(10):
        stream, peer = await _accepted_by_raw_peer()
        await peer.send(CloseConnection(code=1000))
        assert await stream.receive_some() == b""
        assert await stream.receive_some() == b""
        reply = await peer.next_event()
        assert isinstance(reply, CloseConnection)
        assert reply.code == 1000
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"late")


async def test_a_text_message_breaks_the_stream() -> None:
    with trio.fail_after(10):
        stream, peer = await _accepted_by_raw_peer()
        await peer.send(TextMessage(data="hello"))
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some()


async def test_another_path_is_refused_with_404_on_both_sides() -> None:
    theirs, ours = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            dial = partial(ws_connect, theirs, host="gadget", path="/other", peer="g", timeout=5)
            refused: list[str] = []

            async def dialing() -> None:
                with pytest.raises(TransportError) as info:
                    await dial()
                refused.append(str(info.value))

            nursery.start_soon(dialing)
            with pytest.raises(TransportError, match="asked for '/other', not '/usbip'"):
                await ws_accept(ours, path=PATH, peer="device", timeout=5)
        assert refused == ["WebSocket handshake with g for /other refused: HTTP 404"]


async def test_usbip_bytes_on_a_websocket_port_get_an_http_error() -> None:
    theirs, ours = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        await theirs.send_all(bytes.fromhex("0111800500000000") + b"\r\n\r\n")
        with pytest.raises(TransportError, match=r"^WebSocket handshake with device failed"):
            await ws_accept(ours, path=PATH, peer="device", timeout=5)
        assert (await theirs.receive_some()).startswith(b"HTTP/1.1 400 ")


async def test_a_silent_peer_times_out(autojump_clock: trio.abc.Clock) -> None:
    _theirs, ours = trio.testing.memory_stream_pair()
    with pytest.raises(UsbipTimeout, match=r"^WebSocket handshake with d: no request within 3 s"):
        await ws_accept(ours, path=PATH, peer="d", timeout=3)


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("wss://gadget.example/usbip", (True, "gadget.example", 443, "/usbip")),
        ("ws://127.0.0.1:8080/a/b", (False, "127.0.0.1", 8080, "/a/b")),
        ("wss://[::1]:4443", (True, "::1", 4443, "/")),
    ],
)
def test_websocket_urls(url: str, parts: tuple[bool, str, int, str]) -> None:
    got = parse_ws_url(url)
    assert (got.secure, got.host, got.port, got.path) == parts


class _Transfers:
    """Stands in for plug_and_bridge: a control, a bulk IN and a bulk OUT transfer through
    the device that was offered, then holds it."""

    def __init__(self, device: FakeDevice) -> None:
        self.device = device
        self.done = trio.Event()
        self.read = b""

    async def __call__(
        self, remote: RemoteDevice, plug: Plug, origin: str, log: object, plugged: trio.Event
    ) -> None:
        setup = SetupPacket.get_descriptor(DescriptorType.DEVICE, 0, 18)
        assert await remote.control(setup, timeout=5) == MASS_STORAGE_DEVICE
        self.device.send_in(DISK_IN, IN_DATA)
        self.read = await remote.transfer_in(DISK_IN & 0x0F, len(IN_DATA), timeout=5)
        assert await remote.transfer_out(DISK_OUT, OUT_DATA, timeout=5) == len(OUT_DATA)
        self.done.set()
        await trio.sleep_forever()


IN_DATA = bytes(range(256)) * 256  # 64 KiB
OUT_DATA = bytes(reversed(range(256))) * 130


async def test_connect_to_listen_over_wss_carries_bulk_transfers(certs: Certs) -> None:
    device = disk()
    transfers = _Transfers(device)
    listen_log: list[str] = []
    gadget_side = Transport(tls=certs.tls("server", server_side=True), websocket=PATH)
    device_side = Transport(tls=certs.tls("client", server_side=False), websocket=PATH)
    listener = Listener(
        ListenOptions(timeout=5, transport=gadget_side), "dummy_udc.1", listen_log.append, transfers
    )
    with trio.fail_after(10), collapse_single():
        async with trio.open_nursery() as nursery:
            serving = partial(trio.serve_tcp, listener.handle_socket, 0, host=LOOPBACK)
            port = (await nursery.start(serving))[0].socket.getsockname()[1]
            offer = partial(
                connect, FakeSource([device]), "1-1", LOOPBACK, port, timeout=5,
                transport=device_side,
            )  # fmt: skip
            nursery.start_soon(offer)
            await transfers.done.wait()
            nursery.cancel_scope.cancel()
    assert transfers.read == IN_DATA
    assert b"".join(device.out_packets[DISK_OUT]) == OUT_DATA
    assert [line for line in listen_log if "refused" in line] == []


async def test_listen_over_wss_refuses_a_foreign_certificate_before_the_offer(
    certs: Certs,
) -> None:
    device = disk()
    transfers = _Transfers(device)
    listen_log: list[str] = []
    connect_log = Log()
    gadget_side = Transport(tls=certs.tls("server", server_side=True), websocket=PATH)
    stranger = Transport(tls=certs.tls("stranger", server_side=False), websocket=PATH)
    listener = Listener(
        ListenOptions(timeout=5, transport=gadget_side), "dummy_udc.1", listen_log.append, transfers
    )
    with trio.fail_after(10), collapse_single():
        async with trio.open_nursery() as nursery:
            serving = partial(trio.serve_tcp, listener.handle_socket, 0, host=LOOPBACK)
            port = (await nursery.start(serving))[0].socket.getsockname()[1]
            offer = partial(
                connect, FakeSource([device]), "1-1", LOOPBACK, port, timeout=5,
                transport=stranger, log=connect_log, first_retry=30,
            )  # fmt: skip
            nursery.start_soon(offer)
            await connect_log.wait_for("again in")
            nursery.cancel_scope.cancel()
    assert not device.claimed
    assert not transfers.done.is_set()
    assert connect_log[0].startswith(f"TLS handshake with {LOOPBACK}:{port} failed: ")
    refusals = [line for line in listen_log if line.startswith("refused: ")]
    assert len(refusals) == 1
    assert "certificate verify failed" in refusals[0]
