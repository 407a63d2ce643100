"""The device source on pyusb with its libusb-1.0 backend (usbfs underneath, on Linux).

pyusb finds the devices and reads their cached descriptors, opens them, detaches and
reattaches kernel drivers, claims interfaces, and does control transfers and the standard
requests (set_configuration, set_interface_altsetting, clear_halt, reset).

Bulk and interrupt transfers call libusb's synchronous functions through pyusb's own
backend library and device handle, because pyusb's ``read``/``write`` return the bytes a
timed-out transfer moved *as if it had completed*: a transfer that stopped on the timeout
after some full packets could not be told from one that a zero-length packet ended, and
the server must tell them apart to continue the first one after a bounded wait.

Bus IDs are sysfs names (bus number, dash, port path: ``1-1``, ``3-2.4``); the device list's
path is the device's sysfs directory, as usbipd reports it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import usb.backend.libusb1
import usb.core
import usb.util

from usbip_gadget._errors import ExportError
from usbip_gadget.protocol import ExportedDevice, InterfaceInfo, UsbDevice
from usbip_gadget.server._source import EndpointInfo, Moved
from usbip_gadget.usb import SetupPacket, Speed, TransferType

#: libusb_error → the errno Linux's host controller drivers would report in the URB.
_LIBUSB_STATUS = {
    -1: errno.EPROTO,  # LIBUSB_ERROR_IO: usbfs's -EPROTO, -EILSEQ, -ETIME...
    -2: errno.EINVAL,  # INVALID_PARAM
    -3: errno.EACCES,  # ACCESS
    -4: errno.ENODEV,  # NO_DEVICE
    -5: errno.ENOENT,  # NOT_FOUND
    -6: errno.EBUSY,  # BUSY
    -7: errno.ETIMEDOUT,  # TIMEOUT
    -8: errno.EOVERFLOW,  # OVERFLOW: babble
    -9: errno.EPIPE,  # PIPE: stall
    -10: errno.EINTR,  # INTERRUPTED
    -11: errno.ENOMEM,  # NO_MEM
    -12: errno.EOPNOTSUPP,  # NOT_SUPPORTED
}
#: enum libusb_speed → Linux enum usb_device_speed (libusb has no "wireless"; SuperSpeed+
#: Gen 2x2 is SUPER_PLUS to Linux).
_SPEED = {0: Speed.UNKNOWN, 1: Speed.LOW, 2: Speed.FULL, 3: Speed.HIGH, 4: Speed.SUPER}
_SPEED |= {5: Speed.SUPER_PLUS, 6: Speed.SUPER_PLUS}

_PERMISSION_HINT = "run as root, or give this user access to /dev/bus/usb with a udev rule"
_ERRORS = (usb.core.USBError, NotImplementedError, ValueError)


def libusb_status(code: int) -> int:
    """A URB status (0 or a negated errno) for a libusb return code."""
    return 0 if code >= 0 else -_LIBUSB_STATUS.get(code, errno.EIO)


def usb_error_status(exc: Exception) -> int:
    """The URB status for an exception pyusb raised (``ValueError``: a bad argument)."""
    code = getattr(exc, "backend_error_code", None)
    if isinstance(code, int) and code < 0:
        return libusb_status(code)
    number = getattr(exc, "errno", None)
    return -number if isinstance(number, int) and number > 0 else -errno.EINVAL


def linux_speed(libusb_speed: int | None) -> Speed:
    return _SPEED.get(libusb_speed or 0, Speed.UNKNOWN)


def busid_of(dev: Any) -> str | None:
    """The sysfs name of a pyusb device; None for a root hub (it has no port path)."""
    ports = dev.port_numbers
    if not ports:
        return None
    return f"{int(dev.bus)}-{'.'.join(str(int(p)) for p in ports)}"


def exported_device(dev: Any, sysfs: Path) -> ExportedDevice | None:
    """The OP_REP_DEVLIST entry of a pyusb device, with the fields usbipd reads from sysfs."""
    busid = busid_of(dev)
    if busid is None:
        return None
    directory = sysfs / "bus" / "usb" / "devices" / busid
    value = _active_value(dev, directory)
    interfaces = _interfaces(dev, value)
    record = UsbDevice(
        _sysfs_path(directory), busid, int(dev.bus), int(dev.address), linux_speed(dev.speed),
        int(dev.idVendor), int(dev.idProduct), int(dev.bcdDevice), int(dev.bDeviceClass),
        int(dev.bDeviceSubClass), int(dev.bDeviceProtocol), value,
        int(dev.bNumConfigurations), len(interfaces),
    )  # fmt: skip
    return ExportedDevice(record, interfaces)


def _sysfs_path(directory: Path) -> str:
    """``/sys/devices/.../usb1/1-1``: where ``/sys/bus/usb/devices/1-1`` leads."""
    return str(directory.resolve()) if directory.exists() else str(directory)


def _active_value(dev: Any, directory: Path) -> int:
    """bConfigurationValue from sysfs as usbipd reads it (empty: 0), else asked through libusb."""
    try:
        text = (directory / "bConfigurationValue").read_text().strip()
        return int(text) if text else 0
    except (OSError, ValueError):
        pass
    try:
        return int(dev.get_active_configuration().bConfigurationValue)
    except _ERRORS:
        return 0
    finally:
        usb.util.dispose_resources(dev)


def _interfaces(dev: Any, value: int) -> tuple[InterfaceInfo, ...]:
    """Class, subclass and protocol of each interface (alternate 0) of configuration ``value``."""
    for config in dev:
        if int(config.bConfigurationValue) != value:
            continue
        alts = sorted(
            (int(i.bInterfaceNumber), int(i.bInterfaceClass), int(i.bInterfaceSubClass),
             int(i.bInterfaceProtocol))
            for i in config
            if int(i.bAlternateSetting) == 0
        )  # fmt: skip
        return tuple(InterfaceInfo(*alt[1:]) for alt in alts)
    return ()


class PyusbSource:
    """The local devices, through pyusb and libusb-1.0."""

    def __init__(self, *, sysfs: Path = Path("/sys")) -> None:
        # pyusb reports a missing library through logging; our error says it in one line.
        logging.getLogger("usb").addHandler(logging.NullHandler())
        self._backend = usb.backend.libusb1.get_backend()
        if self._backend is None:
            raise ExportError("cannot load libusb-1.0", hint="install libusb-1.0-0")
        self._sysfs = sysfs

    def _find(self) -> list[Any]:
        try:
            return list(usb.core.find(find_all=True, backend=self._backend))
        except usb.core.USBError as exc:
            raise ExportError(f"cannot list the USB devices: {exc}") from None

    def devices(self) -> list[ExportedDevice]:
        found = (self._describe(dev) for dev in self._find())
        return [entry for entry in found if entry is not None]

    def _describe(self, dev: Any) -> ExportedDevice | None:
        try:
            return exported_device(dev, self._sysfs)
        except _ERRORS:
            return None  # unplugged while listed, or descriptors libusb cannot read

    def open(self, busid: str) -> PyusbDevice:
        for dev in self._find():
            if busid_of(dev) == busid:
                return PyusbDevice.open(dev, busid, self._backend.lib, self._sysfs)
        raise ExportError(f"{busid}: no such device", gone=True)


def _open_error(busid: str, exc: Exception) -> ExportError:
    status = usb_error_status(exc)
    if status == -errno.EACCES:
        return ExportError(f"{busid}: permission denied", hint=_PERMISSION_HINT)
    if status == -errno.EBUSY:
        return ExportError(f"{busid}: an interface is claimed by another program")
    if status == -errno.ENODEV:
        return ExportError(f"{busid}: the device is gone", gone=True)
    return ExportError(f"{busid}: {getattr(exc, 'strerror', None) or exc}")


def _ms(timeout: float) -> int:
    return max(1, round(timeout * 1000))  # 0 would mean "no timeout" to libusb


class _SharedLock:
    """Transfers share the libusb handle; a reset or a configuration change has it alone.

    pyusb's reset closes the handle and set_configuration swaps the interfaces, so a transfer
    running meanwhile would use a freed handle or fail as if the device were gone. Transfers
    are bounded slices, so a change waits at most one slice for them.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._sharers = 0
        self._owned = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._owned)
            self._sharers += 1
        try:
            yield
        finally:
            with self._cond:
                self._sharers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._owned)
            self._owned = True
            self._cond.wait_for(lambda: self._sharers == 0)
        try:
            yield
        finally:
            with self._cond:
                self._owned = False
                self._cond.notify_all()


class PyusbDevice:
    """A claimed device: its interfaces claimed, their kernel drivers detached."""

    def __init__(self, dev: Any, busid: str, lib: Any, sysfs: Path = Path("/sys")) -> None:
        self._dev, self._busid, self._lib = dev, busid, lib
        self._devnum_file = sysfs / "bus" / "usb" / "devices" / busid / "devnum"
        self._devnum = str(int(dev.address))
        self._claimed: set[int] = set()
        self._detached: set[int] = set()
        self._alternates: dict[int, int] = {}
        self._endpoints: dict[int, EndpointInfo] = {}
        self._lock = _SharedLock()

    @classmethod
    def open(cls, dev: Any, busid: str, lib: Any, sysfs: Path = Path("/sys")) -> PyusbDevice:
        device = cls(dev, busid, lib, sysfs)
        try:
            device._claim_all()
        except _ERRORS as exc:
            device.close()
            raise _open_error(busid, exc) from None
        return device

    @property
    def busid(self) -> str:
        return self._busid

    def endpoints(self) -> Mapping[int, EndpointInfo]:
        return self._endpoints

    def _active(self) -> Any:
        try:
            return self._dev.get_active_configuration()
        except usb.core.USBError as exc:
            if usb_error_status(exc) == -errno.ENODEV:
                raise
            return None  # unconfigured

    def _claim_all(self) -> None:
        """Detach the kernel drivers of the active configuration's interfaces; claim them."""
        config = self._active()
        numbers = sorted({int(i.bInterfaceNumber) for i in config}) if config is not None else []
        for number in numbers:
            if self._driver_active(number):
                self._dev.detach_kernel_driver(number)
                self._detached.add(number)
            usb.util.claim_interface(self._dev, number)
            self._claimed.add(number)
        self._endpoints = self._current_endpoints(config)

    def _driver_active(self, number: int) -> bool:
        try:
            return bool(self._dev.is_kernel_driver_active(number))
        except NotImplementedError:
            return False  # not Linux: no kernel drivers to detach

    def _current_endpoints(self, config: Any) -> dict[int, EndpointInfo]:
        found: dict[int, EndpointInfo] = {}
        for intf in config if config is not None else ():
            chosen = self._alternates.get(int(intf.bInterfaceNumber), 0)
            if int(intf.bAlternateSetting) != chosen:
                continue
            for ep in intf:
                address, kind = int(ep.bEndpointAddress), TransferType(ep.bmAttributes & 3)
                found[address] = EndpointInfo(
                    address, kind, int(ep.wMaxPacketSize) & 0x7FF, int(ep.bInterval),
                    int(intf.bInterfaceNumber),
                )  # fmt: skip
        return found

    def _release_all(self) -> None:
        for number in sorted(self._claimed):
            with contextlib.suppress(*_ERRORS):  # gone, or released by pyusb already
                usb.util.release_interface(self._dev, number)
        self._claimed.clear()

    # ------------------------------------------------------------ transfers

    def control(self, setup: SetupPacket, data: bytes, timeout: float) -> Moved:
        stage: int | bytes = setup.w_length if setup.is_in else data
        try:
            with self._lock.shared():
                result = self._dev.ctrl_transfer(
                    setup.bm_request_type, setup.b_request, setup.w_value, setup.w_index, stage,
                    _ms(timeout),
                )  # fmt: skip
        except _ERRORS as exc:
            return Moved(usb_error_status(exc))
        if setup.is_in:
            return Moved.received(bytes(result))
        return Moved(0, length=int(result))

    def read(self, address: int, length: int, timeout: float) -> Moved:
        buffer = (ctypes.c_ubyte * max(length, 1))()
        code, moved = self._transfer(address, buffer, length, timeout)
        return Moved.received(ctypes.string_at(buffer, moved), libusb_status(code))

    def write(self, address: int, data: bytes, timeout: float) -> Moved:
        buffer = (ctypes.c_ubyte * max(len(data), 1)).from_buffer_copy(data.ljust(1, b"\0"))
        code, moved = self._transfer(address, buffer, len(data), timeout)
        return Moved(libusb_status(code), length=moved)

    def _transfer(self, address: int, buffer: Any, length: int, timeout: float) -> tuple[int, int]:
        """One synchronous libusb transfer: its return code and the bytes it moved, both kept."""
        endpoint = self._endpoints.get(address)
        if endpoint is None:
            return -2, 0  # INVALID_PARAM: not an endpoint of the current configuration
        interrupt = endpoint.transfer_type == TransferType.INTERRUPT
        call = self._lib.libusb_interrupt_transfer if interrupt else self._lib.libusb_bulk_transfer
        moved = ctypes.c_int(0)
        with self._lock.shared():  # the handle stays open until the call returns
            try:
                handle = self._dev._ctx.managed_open().handle  # pyusb's libusb_device_handle
            except _ERRORS as exc:
                return (-4 if usb_error_status(exc) == -errno.ENODEV else -1), 0
            code = call(handle, address, buffer, length, ctypes.byref(moved), _ms(timeout))
        return int(code), moved.value

    # ------------------------------------------------------------ standard requests

    def set_configuration(self, value: int) -> int:
        with self._lock.exclusive():
            return self._set_configuration_alone(value)

    def _set_configuration_alone(self, value: int) -> int:
        try:
            self._release_all()
            self._dev.set_configuration(value)
            self._alternates = {}
            # The kernel probes drivers for the new interfaces: detach them again.
            self._claim_all()
        except _ERRORS as exc:
            return usb_error_status(exc)
        return 0

    def set_interface(self, interface: int, alternate: int) -> int:
        with self._lock.exclusive():
            return self._set_interface_alone(interface, alternate)

    def _set_interface_alone(self, interface: int, alternate: int) -> int:
        try:
            self._dev.set_interface_altsetting(interface, alternate)
            self._alternates[interface] = alternate
            self._endpoints = self._current_endpoints(self._active())
        except _ERRORS as exc:
            return usb_error_status(exc)
        return 0

    def clear_halt(self, address: int) -> int:
        try:
            with self._lock.shared():
                self._dev.clear_halt(address)
        except _ERRORS as exc:
            return usb_error_status(exc)
        return 0

    def reset(self) -> int:
        with self._lock.exclusive():
            return self._reset_alone()

    def _reset_alone(self) -> int:
        try:
            self._claimed.clear()  # pyusb releases the interfaces and closes the handle
            self._dev.reset()
            self._claim_all()
        except _ERRORS as exc:
            status = usb_error_status(exc)
            # NOT_FOUND: the device came back as another device (its descriptors changed).
            return -errno.ENODEV if status == -errno.ENOENT else status
        return 0

    def plugged(self) -> bool:
        # The same device number at the same port: a device plugged in again gets a new one.
        try:
            return self._devnum_file.read_text(encoding="ascii").strip() == self._devnum
        except OSError:
            return False

    def close(self) -> None:
        with self._lock.exclusive():
            self._close_alone()

    def _close_alone(self) -> None:
        self._release_all()
        for number in sorted(self._detached):
            with contextlib.suppress(*_ERRORS):  # gone, or no driver wants it
                self._dev.attach_kernel_driver(number)
        self._detached.clear()
        with contextlib.suppress(*_ERRORS):
            usb.util.dispose_resources(self._dev)
