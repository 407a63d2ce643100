"""Plugging a GadgetFS gadget in: ep0 is claimed right after the descriptors are written, and
a host that began enumerating before that (GadgetFS then answers SET_CONFIGURATION itself, so
no ENABLE would ever come, and stalls string requests) gets the device plugged in again."""

from __future__ import annotations

import errno
import struct
from pathlib import Path
from typing import Any

import pytest

from tests.usb.vectors import CDC_ECM_CONFIG, MASS_STORAGE_DEVICE
from usbip_gadget import GadgetError
from usbip_gadget.gadget.gadgetfs import Syscalls
from usbip_gadget.gadget.gadgetfs._plug import plug_in
from usbip_gadget.usb import DeviceSnapshot, Speed

UDC = "dummy_udc.0"
CONNECT = struct.pack("<8sI", bytes(8), 1)
CONFIG = DeviceSnapshot.from_raw(
    "1-1", Speed.HIGH, MASS_STORAGE_DEVICE, (CDC_ECM_CONFIG,)
).configurations[0]


class Controller:
    """ep0 opened, written and read, and the UDC's ``function`` attribute."""

    def __init__(self, sysfs: Path, began: list[bool]) -> None:
        self.udc = sysfs / UDC
        self.udc.mkdir(parents=True)
        (self.udc / "function").write_text("\n")
        self.began = began  # for each plug: did the host send a SETUP before ep0 was read?
        self.log: list[tuple[str, Any]] = []
        self.next_fd = 10

    def open(self, path: Any, flags: int) -> int:
        self.next_fd += 1
        self.log.append(("open", self.next_fd))
        return self.next_fd

    def write(self, fd: int, data: bytes) -> int:
        self.log.append(("write", fd))
        (self.udc / "function").write_text("gadgetfs\n")
        return len(data)

    def read(self, fd: int, length: int) -> bytes:
        self.log.append(("read", fd))
        if self.began.pop(0):
            return CONNECT
        raise BlockingIOError(errno.EAGAIN, "no events")

    def close(self, fd: int) -> None:
        self.log.append(("close", fd))
        (self.udc / "function").write_text("\n")

    def syscalls(self) -> Syscalls:
        return Syscalls(
            read=self.read,
            write=self.write,
            open=self.open,
            close=self.close,
            set_blocking=lambda fd, blocking: None,
        )


def test_ep0_is_read_right_after_the_descriptors_are_written(tmp_path: Path) -> None:
    controller = Controller(tmp_path, [False])
    ep0, machine = plug_in(tmp_path / "dummy_udc", b"blob", CONFIG, UDC, tmp_path,
                           controller.syscalls())  # fmt: skip
    assert ep0 == 11
    assert controller.log == [("open", 11), ("write", 11), ("read", 11)]
    assert machine.state.settings == {}


def test_a_host_that_began_first_gets_the_device_plugged_in_again(tmp_path: Path) -> None:
    controller = Controller(tmp_path, [True, False])
    ep0, _ = plug_in(tmp_path / "dummy_udc", b"blob", CONFIG, UDC, tmp_path,
                     controller.syscalls())  # fmt: skip
    assert ep0 == 12
    assert controller.log == [
        ("open", 11), ("write", 11), ("read", 11), ("close", 11),
        ("open", 12), ("write", 12), ("read", 12),
    ]  # fmt: skip


def test_a_host_always_first_is_one_error_and_nothing_left_open(tmp_path: Path) -> None:
    controller = Controller(tmp_path, [True] * 3)
    with pytest.raises(GadgetError, match=r"began enumerating the device on dummy_udc\.0 before"):
        plug_in(tmp_path / "dummy_udc", b"blob", CONFIG, UDC, tmp_path, controller.syscalls())
    opened = [fd for what, fd in controller.log if what == "open"]
    closed = [fd for what, fd in controller.log if what == "close"]
    assert opened == closed == [11, 12, 13]


def test_no_binding_closes_ep0_and_says_so(tmp_path: Path) -> None:
    controller = Controller(tmp_path, [False])
    controller.write = lambda fd, data: len(data)  # type: ignore[method-assign]
    with pytest.raises(GadgetError, match=r"GadgetFS did not bind dummy_udc\.0"):
        plug_in(tmp_path / "dummy_udc", b"blob", CONFIG, UDC, tmp_path, controller.syscalls())
    assert controller.log[-1] == ("close", 11)


def test_a_refused_write_closes_ep0(tmp_path: Path) -> None:
    controller = Controller(tmp_path, [])

    def refuse(fd: int, data: bytes) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    controller.write = refuse  # type: ignore[method-assign]
    with pytest.raises(GadgetError, match="GadgetFS refused the descriptors"):
        plug_in(tmp_path / "dummy_udc", b"blob", CONFIG, UDC, tmp_path, controller.syscalls())
    assert controller.log == [("open", 11), ("close", 11)]
