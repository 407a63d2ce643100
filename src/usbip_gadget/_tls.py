"""Mutual TLS at the TCP edge: both ends show a certificate signed by the one CA they trust.

Python's ``ssl`` through ``trio.SSLStream``; TLS 1.2 at least (1.3 when both ends have it).
The handshake completes, within a deadline, before a single USB/IP byte is read or written,
so a peer without a valid certificate is never answered and costs no import or claim.
"""

from __future__ import annotations

import errno
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import trio

from usbip_gadget._errors import TransportError, UsbipGadgetError, UsbipTimeout

_FILES_HINT = "PEM files: this side's certificate, its private key, the CA that signed the peer's"
_REFUSED_HINT = "does the peer trust the CA that signed this side's certificate?"


@dataclass(frozen=True, slots=True)
class Tls:
    """One side's loaded mutual-TLS configuration.

    ``peer_name`` is the name a dialed server's certificate must carry (the host dialed when
    ``None``); an accepting side checks no name, only that the CA signed the client's.
    """

    context: ssl.SSLContext
    server_side: bool
    peer_name: str | None = None


def load_tls(
    cert: str, key: str, ca: str, *, server_side: bool, peer_name: str | None = None
) -> Tls:
    """Read the certificate, its key and the CA now, so that a bad file is one line at start."""
    # PROTOCOL_TLS_* rather than create_default_context: that one trusts the system's CAs
    # too, and a certificate any public CA signed must not open a USB device.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    _load(lambda: context.load_verify_locations(cafile=ca), f"the CA certificate {ca}")
    _load(lambda: context.load_cert_chain(cert, key), f"the certificate {cert} with key {key}")
    return Tls(context, server_side, peer_name)


def _load(step: Callable[[], None], what: str) -> None:
    try:
        step()
    except ssl.SSLError as exc:
        # OpenSSL names no reason ("PEM lib") when a file is not PEM at all.
        reason = _words(exc) if exc.reason else "not in PEM format"
        raise UsbipGadgetError(f"cannot load {what}: {reason}", hint=_FILES_HINT) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsbipGadgetError(f"cannot load {what}: {reason}", hint=_FILES_HINT) from None


def _words(exc: ssl.SSLError) -> str:
    """OpenSSL's reason in words: ``TLSV1_ALERT_UNKNOWN_CA`` → "tlsv1 alert unknown ca"."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLEOFError) or exc.reason == "UNEXPECTED_EOF_WHILE_READING":
        return "the peer closed the connection"
    if exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return exc.strerror or str(exc)


def tls_reason(exc: BaseException) -> str:
    """Why a TLS stream broke, from trio's ``BrokenResourceError`` and what caused it."""
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLError):
        return _words(cause)
    if isinstance(cause, OSError) and cause.errno is not None:
        return os.strerror(cause.errno)
    return "connection lost"


async def tls_handshake(
    stream: trio.abc.Stream, tls: Tls, *, peer: str, host: str, timeout: float
) -> trio.abc.Stream:
    """``stream`` under TLS once the handshake with ``peer`` is done (``host``: the name dialed).

    ``TransportError`` with the reason if it fails, ``UsbipTimeout`` if it takes longer than
    ``timeout``; the caller closes ``stream`` then.
    """
    # https_compatible: an EOF without close_notify is an end of stream like any other. USB/IP
    # messages carry their own lengths, so a cut one is a protocol error either way.
    secured = trio.SSLStream(
        stream,
        tls.context,
        server_side=tls.server_side,
        server_hostname=None if tls.server_side else (tls.peer_name or host),
        https_compatible=True,
    )
    what = f"TLS handshake with {peer}"
    with trio.move_on_after(timeout):
        try:
            await secured.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise TransportError(f"{what} failed: {tls_reason(exc)}") from None
        return secured if tls.server_side else _Dialed(secured, what)
    raise UsbipTimeout(f"{what}: no answer within {timeout:g} s")


class _Dialed(trio.abc.Stream):
    """A client's TLS stream whose first read may still carry the server's verdict.

    With TLS 1.3 the client's handshake ends before the server has checked the client's
    certificate; a server that refuses it closes the connection, and the client learns so
    on its first read. That read's failure is reported as the handshake's.
    """

    def __init__(self, stream: trio.SSLStream[trio.abc.Stream], what: str) -> None:
        self._stream = stream
        self._what = what
        self._confirmed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._confirmed:
            return await self._stream.receive_some(max_bytes)
        try:
            data = await self._stream.receive_some(max_bytes)
        except trio.BrokenResourceError as exc:
            # A peer that refuses us closes its end; if our bytes were still unread there,
            # its kernel resets the connection instead. Both are the same refusal.
            cause = exc.__cause__
            if not (isinstance(cause, OSError) and cause.errno == errno.ECONNRESET):
                raise TransportError(f"{self._what} failed: {tls_reason(exc)}") from None
            data = b""
        if not data:
            raise TransportError(
                f"{self._what} failed: the peer closed the connection", hint=_REFUSED_HINT
            )
        self._confirmed = True
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()
