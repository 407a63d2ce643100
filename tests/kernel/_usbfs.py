"""The host side of a gadget on dummy_hcd, through usbfs (include/uapi/linux/usbdevice_fs.h).

``UsbfsHost`` is a conformance ``HostDriver``: Linux enumerates and configures the gadget as
it does any device; the driver opens its ``/dev/bus/usb/BBB/DDD`` node, claims its interfaces
and moves control, bulk and interrupt transfers with USBDEVFS ioctls, each a blocking call in
a worker thread with its own timeout. Unplugging and plugging again switch the power of the
root hub's port off and on (its ``disable`` attribute): dummy_hcd reports the power loss to
the gadget as a disconnect, as a pulled cable would be. (Not the UDC's ``soft_connect``: on
6.1, after ``disconnect`` and ``connect`` there, the host's reads of the device descriptor
fail with -EPROTO until the gadget is unbound.)

A URB's status comes back as the ioctl's errno: EPIPE (a stall) raises ``HostStall``,
ETIMEDOUT ``HostTimeout``, EOVERFLOW ``HostBabble``, anything else ``HostError``.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio

from usbip_gadget.testing import HostBabble, HostError, HostStall, HostTimeout
from usbip_gadget.usb import DeviceSnapshot, SetupPacket, parse_configuration

from . import _sysfs

# _IOWR('U', 0, struct usbdevfs_ctrltransfer) and _IOWR('U', 2, struct usbdevfs_bulktransfer),
# both 24 bytes on x86_64; _IOR('U', 15 / 21, unsigned int).
USBDEVFS_CONTROL = 0xC0185500
USBDEVFS_BULK = 0xC0185502
USBDEVFS_CLAIMINTERFACE = 0x8004550F
USBDEVFS_CLEAR_HALT = 0x80045515
# bRequestType, bRequest, wValue, wIndex, wLength, timeout (ms), data
CONTROL = struct.Struct("@BBHHHIP")
# ep, len, timeout (ms), data
BULK = struct.Struct("@IIIP")
UINT = struct.Struct("@I")
assert CONTROL.size == BULK.size == 24

CONTROL_TIMEOUT_MS = 5000
ENUMERATION_TIMEOUT_S = 30.0
USB_DEVICES = Path("/sys/bus/usb/devices")

T = TypeVar("T")


def _host_error(exc: OSError, what: str) -> HostError:
    kinds: dict[int, type[HostError]] = {
        errno.EPIPE: HostStall,
        errno.ETIMEDOUT: HostTimeout,
        errno.EOVERFLOW: HostBabble,
    }
    return kinds.get(exc.errno or 0, HostError)(f"{what}: {exc.strerror}")


def _transfer(
    fd: int, request: int, layout: struct.Struct, fields: tuple[int, ...], data: bytes | int
) -> tuple[int, bytes]:
    """One ioctl with a data buffer (``data`` bytes out, or that many bytes in); the count
    it moved and the buffer."""
    size = data if isinstance(data, int) else len(data)
    buffer = ctypes.create_string_buffer(data if isinstance(data, bytes) else b"", max(1, size))
    argument = bytearray(layout.pack(*fields, ctypes.addressof(buffer)))
    count = fcntl.ioctl(fd, request, argument)
    return count, buffer.raw[:count]


def _claim(fd: int, interface: int) -> Callable[[], object]:
    return lambda: fcntl.ioctl(fd, USBDEVFS_CLAIMINTERFACE, UINT.pack(interface))


class UsbfsHost:
    """Linux's host stack in front of a gadget plugged into dummy ``udc`` (see the module)."""

    def __init__(self, udc: str, snapshot: DeviceSnapshot) -> None:
        self._buses = _sysfs.udc_host_buses(udc)
        (bus,) = self._buses
        self._port_off = USB_DEVICES / f"usb{bus}" / f"{bus}-0:1.0" / f"usb{bus}-port1" / "disable"
        self._snapshot = snapshot
        self._vid, self._pid = snapshot.device.id_vendor, snapshot.device.id_product
        self._fd = -1
        self._connected = True  # the backend plugged it in
        self._addresses: dict[int, int] = {}  # remote → what the host sees

    async def plug(self) -> None:
        if not self._connected:
            await trio.to_thread.run_sync(self._port_off.write_text, "0")
            self._connected = True
        device = await trio.to_thread.run_sync(self._wait_configured)
        node = await trio.to_thread.run_sync(self._wait_node, device)
        self._close()
        self._fd = os.open(node, os.O_RDWR | os.O_CLOEXEC)
        config = parse_configuration(_sysfs.descriptors(device)[18:], lenient=True)
        for number in config.interfaces():
            await self._call(_claim(self._fd, number), f"claim interface {number}")
        remote = self._snapshot.configurations[0].endpoints()
        self._addresses = {
            r.b_endpoint_address: h.b_endpoint_address
            for r, h in zip(remote, config.endpoints(), strict=True)
        }

    async def unplug(self) -> None:
        self._close()
        await trio.to_thread.run_sync(self._port_off.write_text, "1")
        self._connected = False
        await trio.to_thread.run_sync(
            lambda: _sysfs.wait_until(
                lambda: not _sysfs.find_devices(self._buses, self._vid, self._pid),
                ENUMERATION_TIMEOUT_S,
                f"{self._vid:04x}:{self._pid:04x} gone from bus {sorted(self._buses)}",
            )
        )

    async def control_in(self, setup: SetupPacket) -> bytes:
        _, data = await self._control(setup, setup.w_length)
        return data

    async def control_out(self, setup: SetupPacket, data: bytes = b"") -> None:
        await self._control(setup, data)

    async def transfer_in(self, address: int, length: int, *, timeout: float) -> bytes:
        _, data = await self._bulk(address, length, timeout)
        return data

    async def transfer_out(self, address: int, data: bytes, *, timeout: float) -> None:
        count, _ = await self._bulk(address, data, timeout)
        if count != len(data):
            raise HostError(f"OUT 0x{address:02x}: {count} of {len(data)} bytes sent")

    async def clear_halt(self, address: int) -> None:
        local = self._local(address)
        await self._call(
            lambda: fcntl.ioctl(self._fd, USBDEVFS_CLEAR_HALT, UINT.pack(local)),
            f"clear halt 0x{local:02x}",
        )

    async def settle(self) -> None:
        # Nothing tells when a read or write reached the UDC: AIO submits at once, a blocking
        # call in a worker thread within moments.
        await trio.sleep(0.5)

    def close(self) -> None:
        """Close the node; power the port again if it was left off, for the tests after."""
        self._close()
        if not self._connected:
            self._port_off.write_text("0")
            self._connected = True

    # -- internals --------------------------------------------------------------------------

    async def _control(self, setup: SetupPacket, data: bytes | int) -> tuple[int, bytes]:
        fields = (setup.bm_request_type, setup.b_request, setup.w_value, setup.w_index,
                  setup.w_length, CONTROL_TIMEOUT_MS)  # fmt: skip
        return await self._call(
            lambda: _transfer(self._fd, USBDEVFS_CONTROL, CONTROL, fields, data),
            f"control {setup.pack().hex()}",
        )

    async def _bulk(self, address: int, data: bytes | int, timeout: float) -> tuple[int, bytes]:
        local = self._local(address)
        size = data if isinstance(data, int) else len(data)
        fields = (local, size, max(1, int(timeout * 1000)))
        return await self._call(
            lambda: _transfer(self._fd, USBDEVFS_BULK, BULK, fields, data),
            f"{'IN' if local & 0x80 else 'OUT'} 0x{local:02x}",
        )

    async def _call(self, call: Callable[[], T], what: str) -> T:
        if self._fd < 0:
            raise HostError(f"{what}: the device is not plugged")
        try:
            return await trio.to_thread.run_sync(call)
        except OSError as exc:
            raise _host_error(exc, what) from None

    def _wait_configured(self) -> Path:
        return _sysfs.wait_for(
            lambda: _sysfs.configured_device(self._buses, self._vid, self._pid),
            ENUMERATION_TIMEOUT_S,
            f"{self._vid:04x}:{self._pid:04x} configured on bus {sorted(self._buses)}",
        )

    def _wait_node(self, device: Path) -> Path:
        return _sysfs.wait_for(
            lambda: node if (node := _sysfs.usbfs_node(device)) and node.exists() else None,
            ENUMERATION_TIMEOUT_S,
            f"the usbfs node of {device.name}",
        )

    def _local(self, address: int) -> int:
        return self._addresses.get(address, address)

    def _close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
