"""``listen``: the "connect" direction. A device side dials in and offers a device with
OP_REQ_EXPORT; it is replayed on the UDC and bridged exactly as ``attach`` does, over that same
connection. OP_REQ_UNEXPORT or a dropped connection unplugs it; then the next offer is taken.

One controller replays one device: an offer that arrives while another is plugged is refused
with OP_REP_EXPORT status "device busy". An offer carries no interface classes, so the device
policy is applied once the accepted device is enumerated: a refused device is dropped with a
log line, as any other that cannot be replayed, and the next offer is taken.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from usbip_gadget._errors import TransportError, UsbipGadgetError
from usbip_gadget._net import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_PER_ADDRESS,
    PLAIN,
    ConnectionLimits,
    Transport,
    accept_or_refuse,
    accepted_peer,
    serve_capped,
)
from usbip_gadget.bridge._attach import Plug, plug_and_bridge
from usbip_gadget.bridge._bridge import DEFAULT_DEPTH
from usbip_gadget.bridge._plans import EXACT
from usbip_gadget.bridge._policy import NO_RULES, DeviceGate, DevicePolicy
from usbip_gadget.bridge._pumps import Log
from usbip_gadget.client import (
    DEFAULT_ENUMERATION_TIMEOUT,
    RemoteDevice,
    accept_offer,
    receive_offer,
    refuse_offer,
)
from usbip_gadget.gadget import Backend, choose_udc, gadget_lock, list_udcs
from usbip_gadget.protocol import DEFAULT_PORT, OpStatus

DEFAULT_LISTEN = "127.0.0.1"
#: Seconds a new connection may take to make its offer.
OFFER_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ListenOptions:
    """Where ``listen`` waits for offers, and how it replays them."""

    bind: str = DEFAULT_LISTEN
    port: int = DEFAULT_PORT
    udc: str | None = None
    name: str = "usbip-gadget"
    depth: int = DEFAULT_DEPTH
    timeout: float = 10.0
    backend: Backend = Backend.AUTO
    bulk_urbs: str = EXACT
    policy: DevicePolicy = NO_RULES
    allow_dfu: bool = False
    transport: Transport = PLAIN
    enumeration_timeout: float = DEFAULT_ENUMERATION_TIMEOUT
    offer_timeout: float = OFFER_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_per_address: int = DEFAULT_MAX_PER_ADDRESS

    @property
    def limits(self) -> ConnectionLimits:
        return ConnectionLimits(self.max_connections, self.max_per_address)


BridgeFn = Callable[[RemoteDevice, Plug, str, Log, trio.Event], Awaitable[None]]


class Listener:
    """Handles the connections of ``listen``: one offer bridged at a time (``bridge``, by
    default ``plug_and_bridge``), the others refused."""

    def __init__(
        self, options: ListenOptions, udc: str, log: Log, bridge: BridgeFn = plug_and_bridge
    ) -> None:
        self.options = options
        # Offers are independent devices: the gate pins nothing (a different device may come).
        self.plug = Plug(
            udc, options.name, options.depth, options.timeout, options.backend, options.bulk_urbs,
            gate=DeviceGate(options.policy), allow_dfu=options.allow_dfu,
            enumeration_timeout=options.enumeration_timeout,
        )  # fmt: skip
        self.log = log
        self.bridge = bridge
        self.busy = trio.Lock()

    async def handle_socket(self, stream: trio.abc.Stream) -> None:
        """``handle`` once the transport's handshakes are done; a peer that fails them is
        logged in one line and dropped before any USB/IP byte is read or written."""
        transport, timeout = self.options.transport, self.options.timeout
        accepted = await accept_or_refuse(stream, transport, timeout=timeout, log=self.log)
        if accepted is not None:
            await self.handle(*accepted)

    async def handle(self, stream: trio.abc.Stream, peer: str | None = None) -> None:
        """Take one offer on ``stream`` (from ``peer``), bridge it or refuse it, and close."""
        peer = peer if peer is not None else accepted_peer(stream)
        try:
            # The offer is read first, so a connection that offers nothing holds nothing.
            wait = min(self.options.timeout, self.options.offer_timeout)
            offer = await receive_offer(stream, timeout=wait)
            if self.busy.locked():
                self.log(f"{peer}: refused its device: {self.plug.udc} already replays one")
                await refuse_offer(stream, offer, OpStatus.DEV_BUSY)
                return
            async with self.busy, accept_offer(stream, offer) as remote:
                origin = f"{remote.device.busid} from {peer}"
                await self.bridge(remote, self.plug, origin, self.log, trio.Event())
        except UsbipGadgetError as exc:
            self.log(f"{peer}: {exc.one_line()}")
        except Exception as exc:  # one offer's failure must not end listen
            self.log(f"{peer}: internal error: {type(exc).__name__}: {exc}")
        finally:
            await trio.aclose_forcefully(stream)


async def listen(
    options: ListenOptions,
    *,
    log: Log,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Take device offers on ``bind``:``port`` and bridge them, one at a time, until cancelled.

    The gadget name is locked first (``GadgetError`` if another process holds it).
    ``task_status`` receives the port listened on (useful with port 0).
    """
    with gadget_lock(options.name):
        await _listen(options, log, task_status)


async def _listen(options: ListenOptions, log: Log, task_status: trio.TaskStatus[int]) -> None:
    udc = choose_udc(options.udc, list_udcs())
    try:
        listeners = await trio.open_tcp_listeners(options.port, host=options.bind)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise TransportError(f"cannot listen on {options.bind}:{options.port}: {reason}") from None
    port = listeners[0].socket.getsockname()[1]
    over = _over(options.transport)
    log(f"listening on {options.bind}:{port}{over} for a device to plug into {udc}")
    task_status.started(port)
    listener = Listener(options, udc, log)
    await serve_capped(listener.handle_socket, listeners, limits=options.limits, log=log)


def _over(transport: Transport) -> str:
    """`` (wss, /usbip)``: how offers arrive, when not USB/IP straight on TCP."""
    if transport == PLAIN:
        return ""
    path = f", {transport.websocket}" if transport.websocket is not None else ""
    return f" ({transport.describe()}{path})"


__all__ = ["DEFAULT_LISTEN", "ListenOptions", "Listener", "listen"]
