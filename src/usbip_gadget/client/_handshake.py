"""The op phase: the OP_REQ/OP_REP exchanges that open a connection, in either direction.

``list_devices`` asks and is done. Importing (``open_remote_device``) and accepting an
exported device (``accept_offer``) end by handing the connection to a ``RemoteDevice``,
whose reader runs until the ``async with`` block ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from usbip_gadget._errors import (
    ImportRefused,
    RemoteProtocolError,
    TransportError,
    UsbipGadgetError,
    UsbipTimeout,
)
from usbip_gadget._groups import collapse_single
from usbip_gadget._net import map_transport_errors
from usbip_gadget.client._device import RemoteDevice
from usbip_gadget.client._stream import receive
from usbip_gadget.protocol import (
    NEED_DATA,
    Connection,
    DevlistReply,
    DevlistRequest,
    ExportedDevice,
    ExportReply,
    ExportRequest,
    ImportReply,
    ImportRequest,
    Message,
    OpStatus,
    Role,
    Sentinel,
    UsbDevice,
)


async def _op_exchange(
    stream: trio.abc.Stream, conn: Connection, request: Message, timeout: float
) -> Message:
    """Send an op request and wait for the reply."""
    with trio.move_on_after(timeout):
        with map_transport_errors("cannot send request"):
            await stream.send_all(conn.send(request))
        while (event := conn.next_event()) is NEED_DATA:
            await receive(stream, conn, "no reply")
        if isinstance(event, Sentinel):
            raise TransportError("the server closed the connection without replying")
        return event
    raise UsbipTimeout(f"no reply to {type(request).__name__} within {timeout:g} s")


async def _first_op(
    stream: trio.abc.Stream, conn: Connection, timeout: float, what: str
) -> Message:
    """The first op message the peer sends, unasked."""
    with trio.move_on_after(timeout):
        while (event := conn.next_event()) is NEED_DATA:
            await receive(stream, conn, what)
        if isinstance(event, Sentinel):
            raise TransportError(f"{what}: the peer closed the connection")
        return event
    raise UsbipTimeout(f"{what} within {timeout:g} s")


@asynccontextmanager
async def _serving(device: RemoteDevice) -> AsyncIterator[RemoteDevice]:
    """Run ``device``'s reader (and writer) until the block ends."""
    with collapse_single():
        async with trio.open_nursery() as nursery:
            await nursery.start(device.run_reader)
            try:
                yield device
            finally:
                nursery.cancel_scope.cancel()


async def list_devices(stream: trio.abc.Stream, *, timeout: float = 10.0) -> list[ExportedDevice]:
    """OP_REQ_DEVLIST: the devices a server exports."""
    reply = await _op_exchange(stream, Connection(Role.HOST), DevlistRequest(), timeout)
    assert isinstance(reply, DevlistReply)
    if reply.status != OpStatus.OK:
        raise UsbipGadgetError(
            f"the server refused to list devices: {OpStatus.describe(reply.status)}"
        )
    return list(reply.devices)


@asynccontextmanager
async def open_remote_device(
    stream: trio.abc.Stream, busid: str, *, timeout: float = 10.0, unlink_timeout: float = 1.0
) -> AsyncIterator[RemoteDevice]:
    """OP_REQ_IMPORT ``busid`` over ``stream`` and serve its URB traffic until the block ends."""
    conn = Connection(Role.HOST)
    reply = await _op_exchange(stream, conn, ImportRequest(busid), timeout)
    assert isinstance(reply, ImportReply)
    if reply.status != OpStatus.OK or reply.device is None:
        reason = OpStatus.describe(reply.status)
        raise ImportRefused(f"cannot import {busid}: {reason}", reason=reason, status=reply.status)
    device = RemoteDevice(
        stream, conn, reply.device, unlink_timeout=unlink_timeout, send_timeout=timeout
    )
    async with _serving(device):
        yield device


@dataclass(frozen=True)
class ExportOffer:
    """An OP_REQ_EXPORT received and not yet answered (``accept_offer`` or ``refuse_offer``)."""

    conn: Connection
    device: UsbDevice


async def receive_offer(stream: trio.abc.Stream, *, timeout: float = 10.0) -> ExportOffer:
    """The "connect" direction: the OP_REQ_EXPORT a device side sends first on ``stream``."""
    conn = Connection(Role.HOST)
    request = await _first_op(stream, conn, timeout, "no device offered")
    if not isinstance(request, ExportRequest):
        raise RemoteProtocolError(f"expected OP_REQ_EXPORT, got {type(request).__name__}")
    return ExportOffer(conn, request.device)


@asynccontextmanager
async def accept_offer(
    stream: trio.abc.Stream, offer: ExportOffer, *, unlink_timeout: float = 1.0
) -> AsyncIterator[RemoteDevice]:
    """Accept ``offer`` with OP_REP_EXPORT and serve its URB traffic until the block ends.

    The device side may withdraw it later with OP_REQ_UNEXPORT, which the reader answers and
    reports as a ``TransportError``, like a closed connection.
    """
    with map_transport_errors("cannot answer the export"):
        await stream.send_all(offer.conn.send(ExportReply()))
    device = RemoteDevice(stream, offer.conn, offer.device, unlink_timeout=unlink_timeout)
    async with _serving(device):
        yield device


async def refuse_offer(stream: trio.abc.Stream, offer: ExportOffer, status: OpStatus) -> None:
    """Answer ``offer`` with a failure ``status``."""
    with map_transport_errors("cannot answer the export"):
        await stream.send_all(offer.conn.send(ExportReply(status)))


@asynccontextmanager
async def accept_exported_device(
    stream: trio.abc.Stream, *, timeout: float = 10.0, unlink_timeout: float = 1.0
) -> AsyncIterator[RemoteDevice]:
    """``receive_offer`` then ``accept_offer``."""
    offer = await receive_offer(stream, timeout=timeout)
    async with accept_offer(stream, offer, unlink_timeout=unlink_timeout) as device:
        yield device


async def refuse_export(stream: trio.abc.Stream, status: OpStatus, *, timeout: float) -> None:
    """``receive_offer`` then ``refuse_offer``."""
    await refuse_offer(stream, await receive_offer(stream, timeout=timeout), status)
