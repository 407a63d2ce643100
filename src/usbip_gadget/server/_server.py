"""The USB/IP server: connections, the op phase, and who holds which device.

Each connection asks for the device list (answered, then closed, as usbipd does) or imports
one device: the import claims it for that connection alone (a second import is answered
DEV_BUSY), the URB phase runs (``UrbPhase``), and the device is released when it ends.
Nothing that one connection does can end another or the server: its failures are logged
in one line and its connection is closed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import trio

from usbip_gadget._errors import (
    ExportError,
    ImportRefused,
    TransportError,
    UsbipGadgetError,
    UsbipTimeout,
)
from usbip_gadget._net import PLAIN, Transport, accept_or_refuse, format_address, serve_capped
from usbip_gadget.protocol import (
    DEFAULT_PORT,
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
)
from usbip_gadget.server._options import ServeOptions
from usbip_gadget.server._select import Selection
from usbip_gadget.server._source import DeviceSource, LocalDevice
from usbip_gadget.server._transfer import Threads
from usbip_gadget.server._urbs import Link, UrbPhase

Log = Callable[[str], None]

DEFAULT_BIND = "127.0.0.1"
_RECEIVE_SIZE = 4096
#: Listing, opening and closing devices: a few at once across all connections.
_SOURCE_THREADS = 4
_NETWORK_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def device_name(entry: ExportedDevice) -> str:
    """``1-1 (1d6b:0104)``: how the log names a device."""
    dev = entry.device
    return f"{dev.busid} ({dev.id_vendor:04x}:{dev.id_product:04x})"


@dataclass(frozen=True, slots=True)
class Claim:
    """A device opened for one connection, with its device-list entry."""

    entry: ExportedDevice
    device: LocalDevice


class Server:
    """Exports the devices of ``source`` that ``selection`` selects."""

    def __init__(
        self,
        source: DeviceSource,
        selection: Selection,
        *,
        options: ServeOptions | None = None,
        log: Log = lambda _line: None,
        transport: Transport = PLAIN,
    ) -> None:
        self._source = source
        self._transport = transport
        self._selection = selection
        self._options = options or ServeOptions()
        self._log = log
        self._threads = Threads(_SOURCE_THREADS)
        self._claimed: set[str] = set()

    @property
    def options(self) -> ServeOptions:
        return self._options

    @property
    def selection(self) -> Selection:
        return self._selection

    @property
    def transport(self) -> Transport:
        return self._transport

    def listener_note(self) -> str:
        """What is said of the listener after its address: the transport, if not plain TCP."""
        return f" ({self._transport.describe()})" if self._transport != PLAIN else ""

    def log(self, line: str) -> None:
        self._log(line)

    @property
    def claimed(self) -> frozenset[str]:
        """Bus IDs imported right now."""
        return frozenset(self._claimed)

    async def exported(self) -> tuple[ExportedDevice, ...]:
        """The selected devices present now (``ExportError`` if they cannot be listed)."""
        devices = await self._threads.run(self._source.devices)
        return tuple(d for d in devices if self._selection.matches(d.device))

    # ------------------------------------------------------------ one connection

    async def handle(self, stream: trio.abc.Stream, peer: str) -> None:
        """Serve one connection and close it. Raises nothing but cancellation."""
        try:
            await self._serve(stream, peer)
        except UsbipGadgetError as exc:
            self._log(f"{peer}: dropped: {exc.one_line()}")
        except _NETWORK_ERRORS:
            pass  # the client went away during the op phase: nothing to release
        except Exception as exc:  # a bug must not stop the other clients' service
            self._log(f"{peer}: internal error: {type(exc).__name__}: {exc}")
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve(self, stream: trio.abc.Stream, peer: str) -> None:
        conn = Connection(Role.DEVICE, max_transfer=self._options.max_transfer)
        request = await self._first_request(stream, conn)
        if isinstance(request, DevlistRequest):
            await _send(stream, conn, await self._devlist_reply(peer))
        elif isinstance(request, ImportRequest):
            await self._import(stream, conn, request.busid, peer)

    async def _first_request(self, stream: trio.abc.Stream, conn: Connection) -> Message | None:
        timeout = self._options.op_timeout
        with trio.move_on_after(timeout):
            while (event := conn.next_event()) is NEED_DATA:
                conn.receive_data(await stream.receive_some(_RECEIVE_SIZE))
            return None if isinstance(event, Sentinel) else event
        raise UsbipTimeout(f"no request within {timeout:g} s")

    async def _devlist_reply(self, peer: str) -> DevlistReply:
        try:
            return DevlistReply(await self.exported())
        except ExportError as exc:
            self._log(f"{peer}: cannot list devices: {exc.one_line()}")
            return DevlistReply(status=OpStatus.ERROR)

    async def _import(
        self, stream: trio.abc.Stream, conn: Connection, busid: str, peer: str
    ) -> None:
        claim = await self.claim(busid, peer)
        if not isinstance(claim, Claim):
            await _send(stream, conn, ImportReply(claim))
            return
        reply = conn.send(ImportReply(OpStatus.OK, claim.entry.device))
        said = f"imported {device_name(claim.entry)} by {peer}"
        await self.serve_claim(stream, conn, claim, peer, greeting=reply, said=said)

    async def serve_claim(
        self, stream: trio.abc.Stream, link: Link, claim: Claim, peer: str, *, greeting: bytes,
        said: str,
    ) -> None:  # fmt: skip
        """Send ``greeting`` (what gives the peer the device) and log ``said``; serve its URBs
        through ``link`` until one side ends, then release it and log why it ended."""
        name, reason = device_name(claim.entry), "the server stopped"
        try:
            await stream.send_all(greeting)
            self._log(said)
            urbs = UrbPhase(stream, link, claim.device, options=self._options, log=self._log)
            reason = await urbs.run()
        except _NETWORK_ERRORS:
            reason = "connection lost"
        except Exception as exc:  # logged here once, with the device it concerns
            reason = f"internal error: {type(exc).__name__}: {exc}"
        finally:
            with trio.CancelScope(shield=True):
                await self.release(claim)
            self._log(f"released {name} from {peer}: {reason}")

    async def export_to(self, stream: trio.abc.Stream, busid: str, peer: str) -> None:
        """The "connect" direction: offer ``busid`` on ``stream`` (OP_REQ_EXPORT) and, once
        the peer accepts, serve its URBs until the connection ends.

        ``ExportError`` if the device cannot be claimed, ``ImportRefused`` if the peer refuses
        it, ``UsbipGadgetError`` if the peer breaks the protocol.
        """
        claim = await self.claim(busid, peer)
        if not isinstance(claim, Claim):
            raise ExportError(f"cannot offer {busid}: {OpStatus.describe(claim)}")
        name = device_name(claim.entry)
        conn = Connection(Role.DEVICE, max_transfer=self._options.max_transfer)
        try:
            await _send(stream, conn, ExportRequest(claim.entry.device))
            reply = await self._first_request(stream, conn)
            if not isinstance(reply, ExportReply) or reply.status or reply.returncode:
                reason = _refusal(reply)
                status = reply.status if isinstance(reply, ExportReply) else None
                raise ImportRefused(
                    f"{peer} refused {name}: {reason}", reason=reason, status=status
                )
            self._log(f"exported {name} to {peer}")
            reason = "the exporter stopped"
            try:
                urbs = UrbPhase(stream, conn, claim.device, options=self._options, log=self._log)
                reason = await urbs.run()
            except _NETWORK_ERRORS:
                reason = "connection lost"
            finally:
                self._log(f"withdrew {name} from {peer}: {reason}")
        except _NETWORK_ERRORS:
            raise TransportError(f"{peer}: connection lost while offering {name}") from None
        finally:
            with trio.CancelScope(shield=True):
                await self.release(claim)

    async def claim(self, busid: str, peer: str) -> Claim | OpStatus:
        try:
            entries = await self.exported()
        except ExportError as exc:
            self._log(f"refused {busid} to {peer}: {exc.one_line()}")
            return OpStatus.ERROR
        entry = next((e for e in entries if e.device.busid == busid), None)
        if entry is None:
            self._log(f"refused {busid} to {peer}: not exported (or unplugged)")
            return OpStatus.NODEV
        if busid in self._claimed:
            self._log(f"refused {device_name(entry)} to {peer}: already imported")
            return OpStatus.DEV_BUSY
        return await self._open(entry, peer)

    async def _open(self, entry: ExportedDevice, peer: str) -> Claim | OpStatus:
        busid = entry.device.busid
        self._claimed.add(busid)
        try:
            # Shielded: a device opened as the server stops must still be closed.
            with trio.CancelScope(shield=True):
                device = await self._threads.run(partial(self._source.open, busid))
        except ExportError as exc:
            self._claimed.discard(busid)
            self._log(f"refused {device_name(entry)} to {peer}: {exc.one_line()}")
            return OpStatus.NODEV if exc.gone else OpStatus.DEV_ERR
        except BaseException:
            self._claimed.discard(busid)
            raise
        return Claim(entry, device)

    async def release(self, claim: Claim) -> None:
        try:
            await self._threads.run(claim.device.close)
        finally:
            self._claimed.discard(claim.entry.device.busid)

    # ------------------------------------------------------------ TCP

    async def listen(self, host: str, port: int) -> list[trio.SocketListener]:
        """Listening sockets on ``host``:``port`` (0: any free port)."""
        try:
            return await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise TransportError(f"cannot listen on {host}:{port}: {reason}") from None

    async def handle_socket(self, stream: trio.SocketStream) -> None:
        """``handle`` for an accepted TCP connection (keepalive on: dead peers are noticed),
        once the transport's handshakes are done; a peer that fails them is logged in one
        line and dropped before any USB/IP byte is read or written."""
        timeout = self._options.handshake_timeout
        accepted = await accept_or_refuse(stream, self._transport, timeout=timeout, log=self._log)
        if accepted is not None:
            await self.handle(*accepted)


def _refusal(reply: Message | None) -> str:
    if reply is None:
        return "connection closed"
    if isinstance(reply, ExportReply) and reply.status:
        return OpStatus.describe(reply.status)
    if isinstance(reply, ExportReply):
        return f"return code {reply.returncode}"
    return f"answered {type(reply).__name__}"


async def _send(stream: trio.abc.Stream, conn: Connection, message: Message) -> None:
    await stream.send_all(conn.send(message))


async def serve(
    source: DeviceSource,
    selection: Selection,
    *,
    host: str = DEFAULT_BIND,
    port: int = DEFAULT_PORT,
    options: ServeOptions | None = None,
    log: Log = lambda _line: None,
    transport: Transport = PLAIN,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Export the selected devices on ``host``:``port`` until cancelled, over ``transport``.

    ``ExportError`` at once if no device is selected; ``TransportError`` if the address
    cannot be listened on. ``task_status`` receives the port (useful with ``port=0``).
    """
    server = Server(source, selection, options=options, log=log, transport=transport)
    await run_server(server, host, port, task_status=task_status)


async def run_server(
    server: Server,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host``:``port`` and hand each connection to ``server`` until cancelled."""
    exported = await server.exported()
    if not exported:
        raise ExportError(
            f"no local USB device matches {server.selection.describe()}",
            hint="lsusb lists them; hubs are never exported",
        )
    listeners = await server.listen(host, port)
    bound = listeners[0].socket.getsockname()[1]
    names = ", ".join(device_name(e) for e in exported)
    address = format_address((host, bound))
    server.log(f"listening on {address}{server.listener_note()}, exporting {names}")
    task_status.started(bound)
    await serve_capped(
        server.handle_socket, listeners, limits=server.options.limits, log=server.log
    )
