"""``usbip-gadget list`` and ``describe`` against the kernel's usbipd: agreement with the
kernel's own tools, HID report descriptors, and one-line errors for a busy device."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from . import _bridge, _gadget, _sysfs, _usbip

pytestmark = pytest.mark.kernel


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return _bridge.run_cli(args)


@pytest.mark.timeout(300)
def test_list_agrees_with_usbip_list(usbipd: str, backing_file: tuple[Path, bytes]) -> None:
    image, _ = backing_file
    with (
        _gadget.storage_gadget(image) as disk,
        # One gadget per controller: the second source device sits on the other one.
        _gadget.keyboard_gadget(udc="dummy_udc.1") as kbd,
        _usbip.exported(disk.busid),
        _usbip.exported(kbd.busid),
    ):
        reference = _usbip.exportable(usbipd)
        done = _cli("list", usbipd)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split(maxsplit=3) for line in done.stdout.splitlines()}
    assert set(rows) == set(reference) == {disk.busid, kbd.busid}
    for busid, (vid, pid) in reference.items():
        assert rows[busid][1] == f"{vid:04x}:{pid:04x}"
        assert rows[busid][2] == "high"  # dummy_hcd is a high-speed controller
    assert rows[disk.busid][3] == disk.spec.product
    assert rows[kbd.busid][3] == kbd.spec.product


@pytest.mark.timeout(300)
def test_describe_reads_the_hid_report_descriptor(usbipd: str) -> None:
    with _gadget.keyboard_gadget() as kbd, _usbip.exported(kbd.busid) as busid:
        as_json = _cli("describe", usbipd, busid, "--json")
        as_text = _cli("describe", usbipd, busid)
    assert as_json.returncode == 0, as_json.stderr
    snapshot = json.loads(as_json.stdout)
    reports = snapshot["hid_report_descriptors"]
    assert [bytes.fromhex(r["raw"]) for r in reports] == [_gadget.report_descriptor()]
    interface = snapshot["configurations"][0]["interfaces"][0]
    assert (interface["bInterfaceClass"], interface["bInterfaceProtocol"]) == (3, 1)
    assert snapshot["device_qualifier"] is not None  # a high-speed device has one
    assert as_text.returncode == 0, as_text.stderr
    assert re.search(rf"^\s+idProduct\s+0x{kbd.spec.pid:04x}$", as_text.stdout, re.MULTILINE)
    assert kbd.spec.product in as_text.stdout


@pytest.mark.timeout(300)
def test_busy_device_is_one_line_and_exit_1(usbipd: str) -> None:
    with (
        _gadget.keyboard_gadget() as kbd,
        _usbip.exported(kbd.busid) as busid,
        _usbip.attached(usbipd, busid, kbd.spec.vid, kbd.spec.pid),
    ):
        done = _cli("describe", usbipd, busid)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"usbip-gadget: cannot import {busid}:")
    assert "Traceback" not in done.stderr


@pytest.mark.timeout(120)
def test_unexported_busid_and_refused_port(usbipd: str) -> None:
    missing = _cli("describe", usbipd, "9-9")
    refused = _cli("list", f"{usbipd}:1")
    assert missing.returncode == 1
    assert missing.stderr.startswith("usbip-gadget: cannot import 9-9:")
    assert refused.returncode == 1
    assert (
        refused.stderr.strip() == f"usbip-gadget: cannot connect to {usbipd}:1: Connection refused"
    )


@pytest.mark.timeout(180)
def test_doctor_passes_on_the_bed_and_plans_an_exported_device(usbipd: str) -> None:
    with _gadget.keyboard_gadget() as kbd, _usbip.exported(kbd.busid) as busid:
        done = _cli("doctor", "--device", usbipd, busid)
    assert done.returncode == 0, done.stdout + done.stderr
    checks = {line.split()[1]: line for line in done.stdout.splitlines()}
    assert list(checks) == [
        "root", "kernel", "configfs", "modules", "controller", "dwc2", "mounts", "python",
        "pyusb", "device",
    ]  # fmt: skip
    assert all(line.startswith("ok ") for line in checks.values()), done.stdout
    assert "loaded: libcomposite, usb_f_fs, gadgetfs" in checks["modules"]
    assert "dummy_udc.1 (free)" in checks["controller"]
    assert checks["device"].endswith(f"{busid} on {usbipd} replays on this board's controller"
                                     " with functionfs")  # fmt: skip
    assert done.stderr == "10 of 10 checks pass\n"


@pytest.mark.timeout(300)
def test_gadget_up_and_down_stand_up_a_template_device() -> None:
    buses = _sysfs.udc_host_buses(_gadget.SOURCE_UDC)
    vid, pid = _gadget.VID_LINUX_FOUNDATION, 0x0106  # the serial template's
    up = _cli("gadget", "up", "serial", "--udc", _gadget.SOURCE_UDC, "--name", "lab")
    try:
        assert (up.returncode, up.stderr) == (0, "")
        assert up.stdout == f"lab is up on {_gadget.SOURCE_UDC} (1d6b:0106 Serial Gadget)\n"
        device = _sysfs.wait_for(
            lambda: _sysfs.configured_device(buses, vid, pid), 30.0, "the lab serial port"
        )
        _sysfs.wait_until(
            lambda: "cdc_acm" in _sysfs.interface_drivers(device).values(),
            60.0,
            "cdc_acm bound to the lab serial port",
        )
    finally:
        down = _cli("gadget", "down", "lab")
    assert (down.returncode, down.stdout, down.stderr) == (0, "lab is down\n", "")
    assert not (_gadget.GADGETS / "lab").exists()
    _sysfs.wait_until(lambda: not _sysfs.find_devices(buses, vid, pid), 30.0, "the port gone")
