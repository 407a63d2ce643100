"""``serve`` over mutual TLS on real localhost TCP: who gets the device list and who gets
nothing at all, and what each side says when it refuses."""

from __future__ import annotations

import re
import ssl

import pytest
import trio

from tests.net.beds import LOOPBACK, Served, served
from tests.net.certs import Certs
from usbip_gadget._errors import TransportError
from usbip_gadget._net import Transport
from usbip_gadget.client import summarize
from usbip_gadget.protocol import Connection, DevlistRequest, ImportRequest, Message, Role

pytestmark = pytest.mark.timeout(30)


def client(certs: Certs, who: str = "client", **kwargs: str) -> Transport:
    return Transport(tls=certs.tls(who, server_side=False, **kwargs))


async def _all_bytes(stream: trio.abc.ReceiveStream) -> bytes:
    """Everything the peer sends until it closes (a broken TLS stream ends it too)."""
    received = b""
    try:
        while data := await stream.receive_some(65536):
            received += data
    except trio.BrokenResourceError:
        pass
    return received


async def _wait_for_refusal(bed: Served) -> None:
    await bed.log.wait_for("refused: ")


async def _raw_tls_request(port: int, context: ssl.SSLContext, request: Message) -> bytes:
    """A TLS client of our own context sends ``request`` and reads what comes back."""
    tcp = await trio.open_tcp_stream(LOOPBACK, port)
    stream = trio.SSLStream(tcp, context, server_hostname=LOOPBACK, https_compatible=True)
    async with stream:
        try:
            await stream.do_handshake()  # TLS 1.3: done before the server checks our certificate
            await stream.send_all(Connection(Role.HOST).send(request))
        except trio.BrokenResourceError:
            return b""
        return await _all_bytes(stream)


async def test_list_over_mutual_tls_returns_the_devices(certs: Certs) -> None:
    with trio.fail_after(10):
        async with served(certs) as bed:
            items = await summarize(
                LOOPBACK, bed.port, timeout=5, probe=True, transport=client(certs)
            )
            assert [(i.entry.device.busid, i.product) for i in items] == [("1-1", "Disk")]
            assert bed.refusals() == []


async def test_tls_1_3_is_negotiated_and_1_2_is_the_floor(certs: Certs) -> None:
    context = certs.tls("client", server_side=False).context
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert certs.tls("server", server_side=True).context.minimum_version == ssl.TLSVersion.TLSv1_2
    with trio.fail_after(10):
        async with served(certs) as bed:
            tcp = await trio.open_tcp_stream(LOOPBACK, bed.port)
            async with trio.SSLStream(tcp, context, server_hostname=LOOPBACK) as stream:
                await stream.do_handshake()
                assert stream.version() == "TLSv1.3"


def test_only_the_given_ca_is_trusted(certs: Certs) -> None:
    """Not the system's CAs: a certificate a public CA signed must not open a device."""
    reference = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    reference.load_verify_locations(str(certs.folder / "ca.pem"))
    (ca,) = reference.get_ca_certs()
    for side in (True, False):
        assert certs.tls("client", server_side=side).context.get_ca_certs() == [ca]


@pytest.mark.parametrize(
    ("who", "reason"),
    [
        ("stranger", "certificate verify failed"),  # signed by a CA the server does not trust
        (None, "peer did not return a certificate"),
    ],
)
async def test_a_client_without_a_valid_certificate_gets_no_usbip_byte(
    certs: Certs, who: str | None, reason: str
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(certs.folder / "ca.pem"))
    if who is not None:
        cert, key = certs.args(who)[1:4:2]
        context.load_cert_chain(cert, key)
    with trio.fail_after(10):
        async with served(certs) as bed:
            for request in (DevlistRequest(), ImportRequest("1-1")):
                assert await _raw_tls_request(bed.port, context, request) == b""
            await _wait_for_refusal(bed)
            assert bed.untouched()
            assert len(bed.refusals()) == 2, bed.log
            pattern = rf"refused: TLS handshake with 127\.0\.0\.1:\d+ failed: {reason}"
            assert all(re.fullmatch(pattern + ".*", line) for line in bed.refusals()), bed.log


async def test_our_client_with_a_foreign_certificate_is_refused_in_one_line(certs: Certs) -> None:
    with trio.fail_after(10):
        async with served(certs) as bed:
            with pytest.raises(TransportError) as refused:
                await summarize(
                    LOOPBACK, bed.port, timeout=5, probe=True, transport=client(certs, "stranger")
                )
            line = refused.value.one_line()
            assert re.match(rf"TLS handshake with 127\.0\.0\.1:{bed.port} failed: ", line)
            assert "\n" not in line
            await _wait_for_refusal(bed)
            assert bed.untouched()


async def test_a_plain_tcp_client_gets_nothing_and_is_logged_once(certs: Certs) -> None:
    with trio.fail_after(10):
        async with served(certs) as bed:
            async with await trio.open_tcp_stream(LOOPBACK, bed.port) as stream:
                await stream.send_all(Connection(Role.HOST).send(DevlistRequest()))
                assert await _all_bytes(stream) == b""
            await _wait_for_refusal(bed)
            assert len(bed.refusals()) == 1
            assert bed.refusals()[0].startswith("refused: TLS handshake with 127.0.0.1:")
            assert bed.untouched()


async def test_a_silent_client_is_dropped_at_the_handshake_deadline(certs: Certs) -> None:
    with trio.fail_after(10):
        async with served(certs, handshake_timeout=0.3) as bed:
            async with await trio.open_tcp_stream(LOOPBACK, bed.port) as stream:
                assert await _all_bytes(stream) == b""
            await _wait_for_refusal(bed)
            assert re.fullmatch(
                r"refused: TLS handshake with 127\.0\.0\.1:\d+: no answer within 0\.3 s",
                bed.refusals()[0],
            )
            assert bed.untouched()


@pytest.mark.parametrize(
    ("server", "peer_name", "reason"),
    [
        ("impostor", None, "certificate verify failed: "),  # signed by a CA we do not trust
        ("server", "usbip.example", "certificate verify failed: Hostname mismatch"),
    ],
)
async def test_the_client_checks_the_server_certificate(
    certs: Certs, server: str, peer_name: str | None, reason: str
) -> None:
    options = {"peer_name": peer_name} if peer_name else {}
    with trio.fail_after(10):
        async with served(certs, server=server) as bed:
            with pytest.raises(TransportError, match=f"^TLS handshake with .* failed: {reason}"):
                await summarize(
                    LOOPBACK, bed.port, timeout=5, probe=False, transport=client(certs, **options)
                )
            assert bed.untouched()


async def test_the_peer_name_replaces_the_host_dialed(certs: Certs) -> None:
    with trio.fail_after(10):
        async with served(certs) as bed:
            transport = client(certs, peer_name="localhost")  # the server's certificate has it
            items = await summarize(LOOPBACK, bed.port, timeout=5, probe=False, transport=transport)
            assert [i.entry.device.busid for i in items] == ["1-1"]
