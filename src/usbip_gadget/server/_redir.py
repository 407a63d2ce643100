"""``serve --usbredir``: the selected devices offered to usbredir usb-guests (QEMU's
usb-redir device, remote-viewer, ``attach usbredir://``), the usb-host role.

usbredir has no device list and no import: a connection is one device. Each connection
gets the first selected device no other connection holds; the usb-host's hello goes first,
and once the usb-guest's hello is in, the device is claimed, described and connected. Its
URBs are then served by the same ``UrbPhase`` as a USB/IP import, through a
``usbredir.HostLink``, and the device is released when the connection ends.
"""

from __future__ import annotations

from functools import partial

import trio

from usbip_gadget._errors import TransportError, UsbipTimeout
from usbip_gadget._net import PLAIN
from usbip_gadget.protocol import CLOSED, NEED_DATA, ExportedDevice
from usbip_gadget.server._options import ServeOptions
from usbip_gadget.server._select import Selection
from usbip_gadget.server._server import (
    DEFAULT_BIND,
    Claim,
    Log,
    Server,
    device_name,
    run_server,
)
from usbip_gadget.server._source import DeviceSource, LocalDevice
from usbip_gadget.usbredir import (
    ENDPOINTS,
    DeviceConnect,
    EndpointEntry,
    EndpointType,
    EpInfo,
    HostLink,
    InterfaceEntry,
    InterfaceInfo,
    Speed,
    endpoint_index,
)

_RECEIVE_SIZE = 4096
# Linux enum usb_device_speed → usbredir's (SuperSpeed+ is SuperSpeed to a usb-guest).
_SPEED = {1: Speed.LOW, 2: Speed.FULL, 3: Speed.HIGH, 5: Speed.SUPER, 6: Speed.SUPER}
_CONTROL = EndpointEntry(EndpointType.CONTROL, 0, 0, 64)


class RedirServer(Server):
    """A ``Server`` whose connections speak usbredir, one device each (see the module)."""

    async def _serve(self, stream: trio.abc.Stream, peer: str) -> None:
        link = HostLink()
        await stream.send_all(link.hello())
        await _guest_hello(stream, link, self.options.op_timeout)
        claim = await self._first_free(peer)
        if claim is None:
            return
        offer = link.connect(_connect(claim.entry), partial(_tables, claim))
        said = f"redirected {device_name(claim.entry)} to {peer}"
        await self.serve_claim(stream, link, claim, peer, greeting=offer, said=said)

    def listener_note(self) -> str:
        return " (usbredir)"

    async def _first_free(self, peer: str) -> Claim | None:
        for entry in await self.exported():
            if entry.device.busid not in self.claimed:
                claim = await self.claim(entry.device.busid, peer)
                if isinstance(claim, Claim):
                    return claim
        self.log(f"{peer}: no selected device is free for it")
        return None


async def _guest_hello(stream: trio.abc.Stream, link: HostLink, timeout: float) -> None:
    with trio.move_on_after(timeout):
        while True:
            event = link.next_event()
            if link.guest_ready:
                return
            if event is NEED_DATA:
                link.receive_data(await stream.receive_some(_RECEIVE_SIZE))
            elif event is CLOSED:
                raise TransportError("closed before its hello")
    raise UsbipTimeout(f"no hello within {timeout:g} s")


def _connect(entry: ExportedDevice) -> DeviceConnect:
    dev = entry.device
    return DeviceConnect(
        _SPEED.get(dev.speed, Speed.UNKNOWN), dev.b_device_class, dev.b_device_sub_class,
        dev.b_device_protocol, dev.id_vendor, dev.id_product, dev.bcd_device,
    )  # fmt: skip


def _tables(claim: Claim) -> tuple[InterfaceInfo, EpInfo]:
    """The interfaces (numbered in the device list's order) and the endpoints now."""
    interfaces = tuple(
        InterfaceEntry(number, i.b_interface_class, i.b_interface_sub_class, i.b_interface_protocol)
        for number, i in enumerate(claim.entry.interfaces)
    )
    return InterfaceInfo(interfaces), _ep_info(claim.device)


def _ep_info(device: LocalDevice) -> EpInfo:
    slots = [EndpointEntry()] * ENDPOINTS
    slots[endpoint_index(0x00)] = slots[endpoint_index(0x80)] = _CONTROL
    for address, ep in device.endpoints().items():
        slots[endpoint_index(address)] = EndpointEntry(
            int(ep.transfer_type), ep.interval, ep.interface, ep.max_packet
        )
    return EpInfo(tuple(slots))


async def serve_redirected(
    source: DeviceSource,
    selection: Selection,
    *,
    host: str = DEFAULT_BIND,
    port: int,
    options: ServeOptions | None = None,
    log: Log = lambda _line: None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Offer the selected devices over usbredir on ``host``:``port`` until cancelled
    (``ExportError`` at once if none is selected)."""
    server = RedirServer(source, selection, options=options, log=log, transport=PLAIN)
    await run_server(server, host, port, task_status=task_status)


__all__ = ["RedirServer", "serve_redirected"]
