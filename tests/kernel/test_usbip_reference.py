"""Reference checks: source gadgets exported by usbipd and imported by the kernel's vhci-hcd.

They prove the bed is real before usbip-gadget is measured against it: a disk reads back byte for
byte, a key press arrives as an input event, serial bytes cross both ways, and a composite device
gets both of its drivers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from . import _devio, _gadget, _sysfs, _usbip

pytestmark = pytest.mark.kernel

DRIVER_TIMEOUT_S = 60.0
IO_TIMEOUT_S = 20.0


def _on_vhci(device: Path) -> bool:
    busnum = _sysfs.read_text(device / "busnum")
    return busnum.isdigit() and int(busnum) in _sysfs.vhci_buses()


def _wait_node(nodes: Callable[[], list[Path]], what: str) -> Path:
    """Waits until the first node listed by ``nodes()`` exists under /dev."""
    return _sysfs.wait_for(lambda: _sysfs.first_path(nodes()), DRIVER_TIMEOUT_S, what)


@pytest.mark.timeout(240)
def test_storage_reads_back_through_vhci(usbipd: str, backing_file: tuple[Path, bytes]) -> None:
    image, content = backing_file
    with (
        _gadget.storage_gadget(image) as gadget,
        _usbip.exported(gadget.busid) as busid,
    ):
        assert _usbip.exportable(usbipd).get(busid) == (gadget.spec.vid, gadget.spec.pid)
        with _usbip.attached(usbipd, busid, gadget.spec.vid, gadget.spec.pid) as imported:
            assert _on_vhci(imported.device)
            assert _usbip.stub_status(busid) != _usbip.SDEV_ST_AVAILABLE  # in use by the import
            disk = _wait_node(
                lambda: _sysfs.block_devices(imported.device), "a disk on the imported device"
            )
            # The importing host read the same descriptors as the source bus did.
            assert _sysfs.descriptors(imported.device) == _sysfs.descriptors(gadget.device)
            assert _devio.disk_size(disk) == len(content)
            read_back = _devio.read_disk(disk, len(content))
            mismatch = _devio.first_difference(read_back, content)
            assert mismatch is None, f"{disk} differs from the backing file at byte {mismatch}"


@pytest.mark.timeout(180)
def test_keyboard_report_arrives_as_key_a(usbipd: str) -> None:
    press = bytes([0, 0, 0x04, 0, 0, 0, 0, 0])  # usage 0x04: keyboard 'a'
    release = bytes(8)
    with (
        _gadget.keyboard_gadget() as gadget,
        _usbip.exported(gadget.busid) as busid,
        _usbip.attached(usbipd, busid, gadget.spec.vid, gadget.spec.pid) as imported,
    ):
        event_node = _wait_node(
            lambda: _sysfs.event_devices(imported.device), "an input device on the import"
        )
        hidg = _gadget.char_device(gadget, "kbd")
        deadline = time.monotonic() + IO_TIMEOUT_S
        # usbhid polls the interrupt endpoint only while the input device is open.
        events_fd = os.open(event_node, os.O_RDONLY | os.O_NONBLOCK)
        report_fd = os.open(hidg, os.O_WRONLY | os.O_NONBLOCK)
        try:
            _devio.write_all(report_fd, press, deadline, f"press report to {hidg}")
            _devio.write_all(report_fd, release, deadline, f"release report to {hidg}")
            events = _devio.read_key_events(
                events_fd,
                lambda event: event == (_devio.EV_KEY, _devio.KEY_A, 0),
                deadline,
                f"KEY_A press and release on {event_node}",
            )
        finally:
            os.close(report_fd)
            os.close(events_fd)
    # Autorepeat (value 2) may come between the press and the release under a slow guest.
    assert (_devio.EV_KEY, _devio.KEY_A, 1) in events
    assert events[-1] == (_devio.EV_KEY, _devio.KEY_A, 0)


@pytest.mark.timeout(180)
def test_serial_bytes_cross_both_ways(usbipd: str) -> None:
    to_gadget = bytes(range(256)) * 4
    to_host = b"usbip-gadget reply\x00\xff" * 16
    with (
        _gadget.serial_gadget() as gadget,
        _usbip.exported(gadget.busid) as busid,
        _usbip.attached(usbipd, busid, gadget.spec.vid, gadget.spec.pid) as imported,
    ):
        host_tty = _wait_node(
            lambda: _sysfs.tty_devices(imported.device), "a ttyACM on the imported device"
        )
        gadget_tty = _gadget.serial_tty(gadget)
        deadline = time.monotonic() + IO_TIMEOUT_S
        with _devio.raw_tty(gadget_tty) as gadget_fd, _devio.raw_tty(host_tty) as host_fd:
            _devio.write_all(host_fd, to_gadget, deadline, f"write to {host_tty}")
            received = _devio.read_exactly(
                gadget_fd, len(to_gadget), deadline, f"{host_tty} -> {gadget_tty}"
            )
            _devio.write_all(gadget_fd, to_host, deadline, f"write to {gadget_tty}")
            replied = _devio.read_exactly(
                host_fd, len(to_host), deadline, f"{gadget_tty} -> {host_tty}"
            )
    assert received == to_gadget
    assert replied == to_host


@pytest.mark.timeout(240)
def test_composite_binds_serial_and_disk(usbipd: str, backing_file: tuple[Path, bytes]) -> None:
    image, content = backing_file
    with (
        _gadget.composite_gadget(image) as gadget,
        _usbip.exported(gadget.busid) as busid,
        _usbip.attached(usbipd, busid, gadget.spec.vid, gadget.spec.pid) as imported,
    ):
        host_tty = _wait_node(lambda: _sysfs.tty_devices(imported.device), "a ttyACM")
        disk = _wait_node(lambda: _sysfs.block_devices(imported.device), "a disk")
        drivers = set(_sysfs.interface_drivers(imported.device).values())
        head = _devio.read_disk(disk, 1024 * 1024)
        assert _sysfs.descriptors(imported.device) == _sysfs.descriptors(gadget.device)
    assert host_tty.name.startswith("ttyACM")
    assert {"cdc_acm", "usb-storage"} <= drivers
    assert len(head) == 1024 * 1024
    assert _devio.first_difference(head, content[: len(head)]) is None
