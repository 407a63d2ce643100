"""``connect``: the device side dials out. A local device is offered to a ``listen`` peer with
OP_REQ_EXPORT (usbip-export-connect series) and served over that same connection, so a device
behind a firewall or NAT reaches a gadget side that cannot reach it. When the connection ends
or cannot be made, it is tried again with backoff, for as long as ``connect`` runs.
"""

from __future__ import annotations

import trio

from usbip_gadget._errors import ExportError, UsbipGadgetError
from usbip_gadget._net import PLAIN, Transport, dial
from usbip_gadget.server._options import ServeOptions
from usbip_gadget.server._select import Selection
from usbip_gadget.server._server import Log, Server
from usbip_gadget.server._source import DeviceSource

FIRST_RETRY_S = 1.0
LAST_RETRY_S = 30.0


async def connect(
    source: DeviceSource,
    busid: str,
    host: str,
    port: int,
    *,
    options: ServeOptions | None = None,
    timeout: float = 10.0,
    log: Log = lambda _line: None,
    first_retry: float = FIRST_RETRY_S,
    transport: Transport = PLAIN,
) -> None:
    """Offer ``busid`` to ``host``:``port`` (over ``transport``) and serve it, again and
    again, until cancelled.

    ``ExportError`` at once if no such local device exists when it starts.
    """
    server = Server(source, Selection.of(busids=[busid]), options=options, log=log)
    if not await server.exported():
        raise ExportError(f"no local USB device at {busid}", hint="lsusb -t shows the bus IDs")
    peer = f"{host}:{port}"
    delay = first_retry
    while True:
        began = trio.current_time()
        try:
            stream = await dial(host, port, timeout=timeout, transport=transport)
            async with stream:
                await server.export_to(stream, busid, peer)
        except UsbipGadgetError as exc:
            log(exc.one_line())
        except Exception as exc:  # a bug in one session must not end the retries
            log(f"internal error: {type(exc).__name__}: {exc}")
        if trio.current_time() - began > LAST_RETRY_S:
            delay = first_retry  # it was served for a while: the peer is back to normal
        log(f"offering {busid} to {peer} again in {delay:g} s")
        await trio.sleep(delay)
        delay = min(delay * 2, LAST_RETRY_S)


__all__ = ["connect"]
