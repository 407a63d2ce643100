"""Whole operations the command line runs: connect, list or import, enumerate, close."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from usbip_gadget._errors import ImportRefused, UsbipGadgetError
from usbip_gadget._net import PLAIN, Transport, dial
from usbip_gadget.client._enumerate import DEFAULT_ENUMERATION_TIMEOUT, enumerate_device
from usbip_gadget.client._find import DeviceMatch, open_matching_device, read_identity
from usbip_gadget.client._handshake import list_devices, open_remote_device
from usbip_gadget.client._redir import open_redirected_device
from usbip_gadget.protocol import ExportedDevice
from usbip_gadget.usb import DeviceSnapshot


@dataclass(frozen=True, slots=True)
class DeviceSummary:
    """One line of ``list``: the devlist entry and, when the device answered, its product."""

    entry: ExportedDevice
    product: str | None
    note: str | None = None


async def fetch_devlist(
    host: str, port: int, *, timeout: float, transport: Transport = PLAIN
) -> list[ExportedDevice]:
    stream = await dial(host, port, timeout=timeout, transport=transport)
    async with stream:
        return await list_devices(stream, timeout=timeout)


#: Devices ``summarize`` probes at once: a few, so a server sees no burst of imports.
PROBES_AT_ONCE = 4


async def summarize(
    host: str,
    port: int,
    *,
    timeout: float,
    probe: bool,
    deadline: float = DEFAULT_ENUMERATION_TIMEOUT,
    transport: Transport = PLAIN,
) -> list[DeviceSummary]:
    """The server's devices; with ``probe``, each is imported briefly to read its product
    string, ``PROBES_AT_ONCE`` at a time, all within ``deadline`` seconds (those not probed
    by then are listed with a note)."""
    entries = await fetch_devlist(host, port, timeout=timeout, transport=transport)
    if not probe:
        return [DeviceSummary(e, None) for e in entries]
    found: dict[int, DeviceSummary] = {}
    limiter = trio.CapacityLimiter(PROBES_AT_ONCE)

    async def probe_one(index: int, entry: ExportedDevice) -> None:
        async with limiter:
            found[index] = await _probe(host, port, entry, timeout, transport)

    with trio.move_on_after(deadline):
        async with trio.open_nursery() as nursery:
            for index, entry in enumerate(entries):
                nursery.start_soon(probe_one, index, entry)
    unanswered = f"no answer within {deadline:g} s"
    return [found.get(i, DeviceSummary(e, None, unanswered)) for i, e in enumerate(entries)]


async def _probe(
    host: str, port: int, entry: ExportedDevice, timeout: float, transport: Transport
) -> DeviceSummary:
    busid = entry.device.busid
    try:
        return DeviceSummary(entry, await read_product(host, port, busid, timeout, transport))
    except ImportRefused as exc:
        return DeviceSummary(entry, None, exc.reason)
    except UsbipGadgetError as exc:
        return DeviceSummary(entry, None, f"no answer: {exc}")


async def read_product(
    host: str, port: int, busid: str, timeout: float, transport: Transport = PLAIN
) -> str | None:
    """Import ``busid`` and read its iProduct string in its first language."""
    stream = await dial(host, port, timeout=timeout, transport=transport)
    async with stream, open_remote_device(stream, busid, timeout=timeout) as remote:
        _serial, product = await read_identity(remote, timeout=timeout)
        return product


async def describe(
    host: str,
    port: int,
    device: str | DeviceMatch | None,
    *,
    timeout: float,
    deadline: float = DEFAULT_ENUMERATION_TIMEOUT,
    transport: Transport = PLAIN,
    redirect: bool = False,
) -> DeviceSnapshot:
    """Import ``device`` (a bus ID, or a match) and enumerate it (``deadline``: for the whole
    enumeration). With ``redirect``, ``host:port`` is a usbredir usb-host and ``device``
    a match it must pass, or None."""
    if redirect:
        match = device if isinstance(device, DeviceMatch) else None
        async with open_redirected_device(host, port, match, timeout=timeout) as remote:
            return await enumerate_device(remote, timeout=timeout, deadline=deadline)
    if device is None:
        raise UsbipGadgetError("a USB/IP server needs a bus ID or a device to match")
    match = device if isinstance(device, DeviceMatch) else DeviceMatch(busid=device)
    found = open_matching_device(host, port, match, timeout=timeout, transport=transport)
    async with found as (_busid, remote):
        return await enumerate_device(remote, timeout=timeout, deadline=deadline)
