"""Which exported device to import: by bus ID, or by what the device is.

A bus ID names a port on the server, and changes when the device is plugged into another
port, or unplugged and plugged back on some hosts. A ``DeviceMatch`` by ``VID:PID`` (and,
to tell like devices apart, the serial number or product string the device reports) finds
the device again wherever the server has it now: ``open_matching_device`` asks for the
device list, imports the match and yields it with its bus ID of the moment.

Matching strings needs the device's own string descriptors, which the device list does not
carry: each candidate is imported and asked, and the first that matches stays imported and
is the one yielded (a second import right after a release can find the server still busy
with the first).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from usbip_gadget._errors import (
    AmbiguousMatch,
    ImportRefused,
    NoMatchingDevice,
    Overflow,
    Stall,
    UsbipGadgetError,
)
from usbip_gadget._net import PLAIN, Transport, dial
from usbip_gadget.client._device import RemoteDevice
from usbip_gadget.client._handshake import list_devices, open_remote_device
from usbip_gadget.protocol import ExportedDevice
from usbip_gadget.usb import (
    DescriptorType,
    DeviceDescriptor,
    SetupPacket,
    decode_lang_ids,
    decode_string,
)


@dataclass(frozen=True, slots=True)
class DeviceMatch:
    """A bus ID, or ``vid_pid`` with, optionally, the ``serial`` and ``product`` strings
    the device must report (exactly)."""

    busid: str | None = None
    vid_pid: tuple[int, int] | None = None
    serial: str | None = None
    product: str | None = None

    def __post_init__(self) -> None:
        if (self.busid is None) == (self.vid_pid is None):
            raise ValueError("a DeviceMatch takes a bus ID or a VID:PID")
        if self.busid is not None and (self.serial is not None or self.product is not None):
            raise ValueError("a bus ID is matched alone")

    @property
    def needs_strings(self) -> bool:
        return self.serial is not None or self.product is not None

    def __str__(self) -> str:
        if self.busid is not None:
            return self.busid
        assert self.vid_pid is not None
        text = f"{self.vid_pid[0]:04x}:{self.vid_pid[1]:04x}"
        if self.serial is not None:
            text += f" serial {self.serial!r}"
        if self.product is not None:
            text += f" product {self.product!r}"
        return text

    def candidates(self, devices: Sequence[ExportedDevice]) -> list[ExportedDevice]:
        """The listed devices with this bus ID or VID:PID, in the server's order."""
        if self.busid is not None:
            return [d for d in devices if d.device.busid == self.busid]
        return [d for d in devices if (d.device.id_vendor, d.device.id_product) == self.vid_pid]

    def strings_match(self, serial: str | None, product: str | None) -> bool:
        return (self.serial is None or serial == self.serial) and (
            self.product is None or product == self.product
        )


@asynccontextmanager
async def open_matching_device(
    host: str,
    port: int,
    match: DeviceMatch,
    *,
    timeout: float,
    transport: Transport = PLAIN,
) -> AsyncIterator[tuple[str, RemoteDevice]]:
    """Import the device ``match`` selects; yields (its bus ID now, the imported device).

    ``NoMatchingDevice`` when none matches, ``AmbiguousMatch`` when a VID:PID alone matches
    more than one; by bus ID, the import is made without asking for the list."""
    busid = match.busid
    if busid is None:
        stream = await dial(host, port, timeout=timeout, transport=transport)
        async with stream:
            devices = await list_devices(stream, timeout=timeout)
        found = match.candidates(devices)
        if not found:
            listed = ", ".join(_entry_name(d) for d in devices) or "none"
            raise NoMatchingDevice(
                f"no device {match} on {host}:{port} (exported: {listed})",
                reason="no matching device",
            )
        if not match.needs_strings:
            if len(found) > 1:
                raise AmbiguousMatch(
                    f"{len(found)} devices {match} on {host}:{port}"
                    f" ({', '.join(d.device.busid for d in found)})",
                    hint="tell them apart with a serial number or product string, or a bus ID",
                )
            busid = found[0].device.busid
        else:
            async with _first_with_strings(host, port, match, found, timeout, transport) as hit:
                yield hit
            return
    stream = await dial(host, port, timeout=timeout, transport=transport)
    async with stream, open_remote_device(stream, busid, timeout=timeout) as remote:
        found_ids = (remote.device.id_vendor, remote.device.id_product)
        if match.vid_pid is not None and found_ids != match.vid_pid:
            # Another device took the port between the list and the import.
            raise NoMatchingDevice(
                f"{busid} on {host}:{port} is {found_ids[0]:04x}:{found_ids[1]:04x} now,"
                f" not {match}",
                reason="no matching device",
            )
        yield busid, remote


@asynccontextmanager
async def _first_with_strings(
    host: str,
    port: int,
    match: DeviceMatch,
    found: Sequence[ExportedDevice],
    timeout: float,
    transport: Transport,
) -> AsyncIterator[tuple[str, RemoteDevice]]:
    seen: list[str] = []
    for entry in found:
        busid = entry.device.busid
        async with AsyncExitStack() as stack:
            stream = await dial(host, port, timeout=timeout, transport=transport)
            await stack.enter_async_context(stream)
            try:
                remote = await stack.enter_async_context(
                    open_remote_device(stream, busid, timeout=timeout)
                )
            except ImportRefused as exc:
                seen.append(f"{busid}: {exc.reason}")
                continue
            try:
                serial, product = await read_identity(remote, timeout=timeout)
            except UsbipGadgetError as exc:  # a device that cannot say is not the one
                seen.append(f"{busid}: {exc}")
                continue
            if match.strings_match(serial, product):
                yield busid, remote
                return
            seen.append(f"{busid}: serial {serial!r} product {product!r}")
    raise NoMatchingDevice(
        f"no device {match} on {host}:{port} ({'; '.join(seen)})", reason="no matching device"
    )


async def read_identity(remote: RemoteDevice, *, timeout: float) -> tuple[str | None, str | None]:
    """The device's (serial number, product) strings in its first language; None for a
    string it does not have or stalls (each is read on its own)."""
    setup = SetupPacket.get_descriptor(DescriptorType.DEVICE, 0, 18)
    device = DeviceDescriptor.parse(await remote.control(setup, timeout=timeout))
    if not (device.i_serial_number or device.i_product):
        return None, None
    langs = SetupPacket.get_descriptor(DescriptorType.STRING, 0, 255)
    lang_ids = decode_lang_ids(await remote.control(langs, timeout=timeout), lenient=True)
    if not lang_ids:
        return None, None

    async def string(index: int) -> str | None:
        if not index:
            return None
        setup = SetupPacket.get_descriptor(DescriptorType.STRING, index, 255, lang_id=lang_ids[0])
        try:
            return decode_string(await remote.control(setup, timeout=timeout), lenient=True)
        except (Stall, Overflow):  # this string is not there: the other may be
            return None

    return await string(device.i_serial_number), await string(device.i_product)


def _entry_name(entry: ExportedDevice) -> str:
    dev = entry.device
    return f"{dev.busid} {dev.id_vendor:04x}:{dev.id_product:04x}"
