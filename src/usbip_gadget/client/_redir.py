"""Import over usbredir: the usb-guest role, as QEMU takes a device from ``usbredirect``.

A usbredir usb-host (``usbredirect --device VID:PID --as HOST:PORT``) offers one device per
connection: both sides send hello, and the usb-host then describes its device (interface
info, endpoint info, device_connect). The device is then a ``RemoteDevice`` like an imported
USB/IP one, talking through a ``usbredir.GuestLink``: enumeration, the bridge and its pumps
do not know which protocol carries their URBs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio

from usbip_gadget._errors import (
    NoMatchingDevice,
    TransportError,
    UsbipGadgetError,
    UsbipTimeout,
)
from usbip_gadget._net import dial, format_address, map_transport_errors
from usbip_gadget.client._device import RemoteDevice
from usbip_gadget.client._find import DeviceMatch, read_identity
from usbip_gadget.client._handshake import _serving
from usbip_gadget.client._stream import receive
from usbip_gadget.protocol import CLOSED, NEED_DATA
from usbip_gadget.usbredir import GuestLink

REDIR_SCHEME = "usbredir"


def parse_redir_url(text: str) -> tuple[str, int] | None:
    """``usbredir://HOST:PORT`` → (host, port); None for anything without that scheme."""
    if not text.startswith(f"{REDIR_SCHEME}://"):
        return None
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise UsbipGadgetError(f"invalid port in {text!r}") from None
    if not parts.hostname or port is None or parts.path not in ("", "/"):
        raise UsbipGadgetError(f"invalid usbredir address {text!r}: usbredir://HOST:PORT")
    return parts.hostname, port


def redir_url(host: str, port: int) -> str:
    return f"{REDIR_SCHEME}://{format_address((host, port))}"


@asynccontextmanager
async def open_redirected_device(
    host: str,
    port: int,
    match: DeviceMatch | None = None,
    *,
    timeout: float = 10.0,
    unlink_timeout: float = 1.0,
) -> AsyncIterator[RemoteDevice]:
    """Connect to the usbredir usb-host at ``host:port`` and use the device it connects.

    With ``match`` (a VID:PID, and strings) a different device is ``NoMatchingDevice``;
    a usb-host that connects no device within ``timeout`` is ``UsbipTimeout``."""
    url = redir_url(host, port)
    stream = await dial(host, port, timeout=timeout)
    async with stream:
        link = GuestLink()
        await _handshake(stream, link, url, timeout)
        device = RemoteDevice(
            stream, link, link.device_record(url), unlink_timeout=unlink_timeout,
            send_timeout=timeout,
        )  # fmt: skip
        async with _serving(device):
            if match is not None:
                await _check(device, match, url, timeout)
            yield device


async def _handshake(stream: trio.abc.Stream, link: GuestLink, url: str, timeout: float) -> None:
    """Hellos both ways, then the usb-host's description of its device."""
    with trio.move_on_after(timeout) as scope:
        with map_transport_errors(url):
            await stream.send_all(link.hello())
        while (event := link.next_event()) is NEED_DATA and link.connected is None:
            await receive(stream, link, url)  # nothing is in flight yet: no reply can come
        if event is CLOSED and link.connected is None:
            raise TransportError(f"{url} closed the connection before offering a device")
    if scope.cancelled_caught:
        raise UsbipTimeout(f"{url} offered no device within {timeout:g} s")


async def _check(device: RemoteDevice, match: DeviceMatch, url: str, timeout: float) -> None:
    record = device.device
    found = (record.id_vendor, record.id_product)
    if match.vid_pid is not None and found != match.vid_pid:
        raise NoMatchingDevice(
            f"{url} offers {found[0]:04x}:{found[1]:04x}, not {match}",
            reason="no matching device",
        )
    if match.needs_strings:
        serial, product = await read_identity(device, timeout=timeout)
        if not match.strings_match(serial, product):
            raise NoMatchingDevice(
                f"{url} offers serial {serial!r} product {product!r}, not {match}",
                reason="no matching device",
            )


__all__ = ["REDIR_SCHEME", "open_redirected_device", "parse_redir_url", "redir_url"]
