"""The pyusb device source against stub pyusb devices and a stub libusb: no hardware."""

from __future__ import annotations

import array
import ctypes
import errno
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import usb.core

from usbip_gadget.protocol import InterfaceInfo, UsbDevice
from usbip_gadget.server import EndpointInfo, ExportError, Moved, PyusbDevice
from usbip_gadget.server._pyusb import (
    busid_of,
    exported_device,
    libusb_status,
    linux_speed,
    usb_error_status,
)
from usbip_gadget.usb import SetupPacket, Speed, TransferType


@dataclass
class StubEndpoint:
    bEndpointAddress: int
    bmAttributes: int
    wMaxPacketSize: int
    bInterval: int = 0


@dataclass
class StubInterface:
    bInterfaceNumber: int
    bAlternateSetting: int
    bInterfaceClass: int
    bInterfaceSubClass: int
    bInterfaceProtocol: int
    endpoints: list[StubEndpoint] = field(default_factory=list)

    def __iter__(self) -> Iterator[StubEndpoint]:
        return iter(self.endpoints)


@dataclass
class StubConfig:
    bConfigurationValue: int
    interfaces: list[StubInterface]

    def __iter__(self) -> Iterator[StubInterface]:
        return iter(self.interfaces)


class StubContext:
    """pyusb's resource manager, as far as the adapter and usb.util reach it."""

    def __init__(self) -> None:
        self.claimed: list[int] = []
        self.released: list[int] = []
        self.disposed = 0
        self.handle = object()

    def managed_claim_interface(self, _device: object, number: int) -> None:
        self.claimed.append(number)

    def managed_release_interface(self, _device: object, number: int) -> None:
        self.released.append(number)

    def dispose(self, _device: object, _close_handle: bool = True) -> None:
        self.disposed += 1

    def managed_open(self) -> Any:
        return type("Handle", (), {"handle": self.handle})()


STORAGE = StubInterface(0, 0, 8, 6, 0x50, [StubEndpoint(0x81, 2, 512), StubEndpoint(2, 2, 512)])
HID = StubInterface(1, 0, 3, 1, 1, [StubEndpoint(0x83, 3, 0x1808, 4)])  # 8 bytes, 3 per microframe
HID_ALT = StubInterface(1, 1, 3, 0, 0, [StubEndpoint(0x84, 3, 64)])


@dataclass
class StubDevice:
    """A pyusb ``usb.core.Device`` as the adapter uses it."""

    configs: list[StubConfig]
    active: int = 2
    bus: int = 1
    address: int = 5
    port_numbers: tuple[int, ...] | None = (1,)
    speed: int | None = 3
    idVendor: int = 0x0781
    idProduct: int = 0x5567
    bcdDevice: int = 0x0100
    bDeviceClass: int = 0
    bDeviceSubClass: int = 0
    bDeviceProtocol: int = 0
    drivers: set[int] = field(default_factory=set)
    calls: list[tuple[object, ...]] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)
    _ctx: StubContext = field(default_factory=StubContext)

    @property
    def bNumConfigurations(self) -> int:
        return len(self.configs)

    def __iter__(self) -> Iterator[StubConfig]:
        return iter(self.configs)

    def _call(self, *call: object) -> None:
        self.calls.append(call)
        error = self.fail.get(str(call[0]))
        if error is not None:
            raise error

    def get_active_configuration(self) -> StubConfig:
        for config in self.configs:
            if config.bConfigurationValue == self.active:
                return config
        raise usb.core.USBError("Configuration not set")

    def is_kernel_driver_active(self, number: int) -> bool:
        return number in self.drivers

    def detach_kernel_driver(self, number: int) -> None:
        self._call("detach", number)
        self.drivers.discard(number)

    def attach_kernel_driver(self, number: int) -> None:
        self._call("attach", number)
        self.drivers.add(number)

    def set_configuration(self, value: int) -> None:
        self._call("set_configuration", value)
        self.active = value
        self.drivers = {0}  # the kernel probes the new interfaces at once

    def set_interface_altsetting(self, interface: int, alternate: int) -> None:
        self._call("set_interface", interface, alternate)

    def clear_halt(self, address: int) -> None:
        self._call("clear_halt", address)

    def ctrl_transfer(self, *args: Any) -> Any:
        self._call("control", *args)
        if args[0] & 0x80:
            return array.array("B", b"\x12\x01"[: args[4]])
        return len(args[4])


def two_configs() -> list[StubConfig]:
    return [StubConfig(1, [STORAGE]), StubConfig(2, [HID_ALT, HID, STORAGE])]


def sysfs_with(tmp_path: Path, busid: str, value: str) -> Path:
    """A sysfs tree where /sys/bus/usb/devices/BUSID leads to the device's directory."""
    device = tmp_path / "devices" / "platform" / "dummy_hcd.0" / "usb1" / busid
    device.mkdir(parents=True)
    (device / "bConfigurationValue").write_text(value)
    links = tmp_path / "bus" / "usb" / "devices"
    links.mkdir(parents=True)
    (links / busid).symlink_to(Path("../../../devices/platform/dummy_hcd.0/usb1") / busid)
    return tmp_path


# ---------------------------------------------------------------- the device list


def test_device_list_fields_are_those_usbipd_reads(tmp_path: Path) -> None:
    sysfs = sysfs_with(tmp_path, "1-1", "2\n")
    entry = exported_device(StubDevice(two_configs(), speed=4), sysfs)
    assert entry is not None
    assert entry.device == UsbDevice(
        str(tmp_path.resolve() / "devices/platform/dummy_hcd.0/usb1/1-1"), "1-1", 1, 5,
        Speed.SUPER, 0x0781, 0x5567, 0x0100, 0, 0, 0, 2, 2, 2,
    )  # fmt: skip
    # Interfaces in number order, alternate setting 0, of the active configuration.
    assert entry.interfaces == (InterfaceInfo(8, 6, 0x50), InterfaceInfo(3, 1, 1))


def test_an_unconfigured_device_has_no_interfaces(tmp_path: Path) -> None:
    entry = exported_device(StubDevice(two_configs()), sysfs_with(tmp_path, "1-1", "\n"))
    assert entry is not None
    assert (entry.device.b_configuration_value, entry.device.b_num_interfaces) == (0, 0)
    assert entry.interfaces == ()


def test_without_sysfs_the_configuration_is_asked_through_libusb(tmp_path: Path) -> None:
    device = StubDevice(two_configs(), active=1)
    entry = exported_device(device, tmp_path)
    assert entry is not None
    assert entry.device.b_configuration_value == 1
    assert entry.device.path == str(tmp_path / "bus/usb/devices/1-1")
    assert entry.interfaces == (InterfaceInfo(8, 6, 0x50),)
    assert device._ctx.disposed == 1  # the handle opened to ask is closed again


@pytest.mark.parametrize(
    ("bus", "ports", "busid"), [(1, (1,), "1-1"), (3, (2, 4), "3-2.4"), (2, (), None)]
)
def test_bus_ids_are_sysfs_names(bus: int, ports: tuple[int, ...], busid: str | None) -> None:
    assert busid_of(StubDevice([], bus=bus, port_numbers=ports)) == busid


@pytest.mark.parametrize(
    ("libusb", "linux"),
    [(0, 0), (1, 1), (2, 2), (3, 3), (4, 5), (5, 6), (6, 6), (None, 0), (99, 0)],
)
def test_libusb_speeds_become_linux_speeds(libusb: int | None, linux: int) -> None:
    assert linux_speed(libusb) == linux


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (usb.core.USBError("stall", -9, errno.EPIPE), -errno.EPIPE),
        (usb.core.USBTimeoutError("slow", -7, errno.ETIMEDOUT), -errno.ETIMEDOUT),
        (usb.core.USBError("io", -1, errno.EIO), -errno.EPROTO),
        (usb.core.USBError("gone", -4, errno.ENODEV), -errno.ENODEV),
        (usb.core.USBError("weird", -99, None), -errno.EIO),
        (usb.core.USBError("no code", None, errno.EBUSY), -errno.EBUSY),
        (ValueError("Invalid configuration 7"), -errno.EINVAL),
    ],
)
def test_errors_become_urb_statuses(error: Exception, status: int) -> None:
    assert usb_error_status(error) == status


def test_libusb_codes() -> None:
    assert (libusb_status(0), libusb_status(12), libusb_status(-8)) == (0, 0, -errno.EOVERFLOW)


# ---------------------------------------------------------------- a claimed device


class StubLib:
    """libusb's synchronous bulk and interrupt calls, answering from a script."""

    def __init__(self, *answers: tuple[int, bytes]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int, int, int, bytes]] = []

    def _answer(self, name: str, handle: object, address: int, buffer: Any, length: int,
                moved: Any, timeout: int) -> int:  # fmt: skip
        code, data = self.answers.pop(0)
        sent = ctypes.string_at(buffer, length) if not address & 0x80 else b""
        self.calls.append((name, address, length, timeout, sent))
        ctypes.memmove(buffer, data, len(data))
        moved._obj.value = len(data) if address & 0x80 else len(data) or length
        return code

    def libusb_bulk_transfer(self, *args: Any) -> int:
        return self._answer("bulk", *args)

    def libusb_interrupt_transfer(self, *args: Any) -> int:
        return self._answer("interrupt", *args)


def test_open_detaches_and_claims_and_close_gives_back() -> None:
    stub = StubDevice(two_configs(), drivers={0, 1})
    device = PyusbDevice.open(stub, "1-1", StubLib())
    assert stub.drivers == set()
    assert stub._ctx.claimed == [0, 1]
    assert device.endpoints() == {
        0x81: EndpointInfo(0x81, TransferType.BULK, 512),
        0x02: EndpointInfo(0x02, TransferType.BULK, 512),
        0x83: EndpointInfo(0x83, TransferType.INTERRUPT, 8, interval=4, interface=1),
    }
    device.close()
    assert stub._ctx.released == [0, 1]
    assert stub.drivers == {0, 1}


@pytest.mark.parametrize(
    ("code", "message", "gone"),
    [
        (-3, "1-1: permission denied (run as root", False),
        (-4, "1-1: the device is gone", True),
        (-6, "1-1: an interface is claimed by another program", False),
        (-1, "1-1: Input/Output Error", False),
    ],
)
def test_open_errors(code: int, message: str, gone: bool) -> None:
    stub = StubDevice(two_configs(), drivers={0})
    stub.fail["detach"] = usb.core.USBError("Input/Output Error", code, None)
    with pytest.raises(ExportError) as info:
        PyusbDevice.open(stub, "1-1", StubLib())
    assert info.value.one_line().startswith(message)
    assert info.value.gone == gone


def test_a_timed_out_read_keeps_the_packets_it_took() -> None:
    lib = StubLib((-7, b"p" * 512), (0, b"q" * 100), (-9, b""), (0, bytes(8)))
    device = PyusbDevice.open(StubDevice(two_configs()), "1-1", lib)
    assert device.read(0x81, 4096, 0.02) == Moved(-errno.ETIMEDOUT, b"p" * 512, 512)
    assert device.read(0x81, 3584, 0.02) == Moved(0, b"q" * 100, 100)
    assert device.read(0x81, 512, 0.02) == Moved(-errno.EPIPE, b"", 0)
    assert device.read(0x83, 8, 1.0) == Moved(0, bytes(8), 8)
    assert [c[:4] for c in lib.calls] == [
        ("bulk", 0x81, 4096, 20), ("bulk", 0x81, 3584, 20), ("bulk", 0x81, 512, 20),
        ("interrupt", 0x83, 8, 1000),
    ]  # fmt: skip
    assert device.read(0x85, 8, 1.0) == Moved(-errno.EINVAL)  # not an endpoint now


def test_writes_report_what_went_out() -> None:
    lib = StubLib((0, b""), (-7, b"x" * 512), (0, b""))
    device = PyusbDevice.open(StubDevice(two_configs()), "1-1", lib)
    assert device.write(0x02, b"abc", 0.5) == Moved(0, b"", 3)
    assert device.write(0x02, b"y" * 1024, 0.5) == Moved(-errno.ETIMEDOUT, b"", 512)
    assert device.write(0x02, b"", 0.5) == Moved(0, b"", 0)
    assert [(c[2], c[4][:3]) for c in lib.calls] == [(3, b"abc"), (1024, b"yyy"), (0, b"")]


def test_control_transfers_and_standard_requests() -> None:
    stub = StubDevice(two_configs(), drivers={1})
    device = PyusbDevice.open(stub, "1-1", StubLib())
    assert device.control(SetupPacket(0x80, 6, 0x100, 0, 2), b"", 1.0) == Moved(0, b"\x12\x01", 2)
    assert device.control(SetupPacket(0x40, 1, 0, 0, 3), b"abc", 1.0) == Moved(0, b"", 3)
    stub.fail["control"] = usb.core.USBError("stall", -9, errno.EPIPE)
    assert device.control(SetupPacket(0xC0, 1, 0, 0, 1), b"", 1.0) == Moved(-errno.EPIPE)
    assert device.set_configuration(1) == 0
    assert stub.calls[-2:] == [("set_configuration", 1), ("detach", 0)]  # re-detached
    assert set(device.endpoints()) == {0x81, 0x02}
    assert device.clear_halt(0x81) == 0
    stub.fail["set_interface"] = ValueError("no such alternate setting")
    assert device.set_interface(0, 3) == -errno.EINVAL
    device.close()
    assert stub.drivers == {0, 1}  # both interfaces that were detached are offered back


@pytest.mark.parametrize(("devnum", "plugged"), [("5\n", True), ("6\n", False), (None, False)])
def test_plugged_is_the_same_device_number_at_the_same_port(
    tmp_path: Path, devnum: str | None, plugged: bool
) -> None:
    device_dir = tmp_path / "bus" / "usb" / "devices" / "1-1"
    device_dir.mkdir(parents=True)
    if devnum is not None:
        (device_dir / "devnum").write_text(devnum)
    device = PyusbDevice.open(StubDevice(two_configs()), "1-1", StubLib(), tmp_path)
    assert device.plugged() is plugged  # the stub device has address 5
