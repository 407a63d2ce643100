"""``usbip-gadget describe`` against the kernel's usbipd: it must report the descriptors the
kernel itself read from the device, byte for byte."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from . import _bridge, _gadget, _sysfs, _usbip

pytestmark = pytest.mark.kernel

LANGID_EN_US = "0x0409"

Builder = Callable[[Path], contextlib.AbstractContextManager[_gadget.Gadget]]
BUILDERS: dict[str, Builder] = {
    "storage": _gadget.storage_gadget,
    "composite": _gadget.composite_gadget,
}


def _describe(host: str, busid: str) -> dict[str, Any]:
    done = _bridge.run_cli(["describe", host, busid, "--json"])
    assert done.returncode == 0, f"describe exited {done.returncode}: {done.stderr.strip()}"
    assert done.stdout.strip(), f"describe printed nothing (stderr: {done.stderr.strip()!r})"
    described = json.loads(done.stdout)
    assert isinstance(described, dict)
    return described


def _lsusb(vid: int, pid: int) -> dict[str, str]:
    """idVendor, idProduct and iProduct (index and text) as ``lsusb -v`` prints them."""
    text = _usbip.run(["lsusb", "-v", "-d", f"{vid:04x}:{pid:04x}"])
    fields: dict[str, str] = {}
    for key in ("idVendor", "idProduct"):
        match = re.search(rf"^\s*{key}\s+0x([0-9a-f]{{4}})", text, re.MULTILINE)
        assert match, f"lsusb -v shows no {key}"
        fields[key] = match[1]
    product = re.search(r"^\s*iProduct\s+(\d+)\s*(.*)$", text, re.MULTILINE)
    assert product, "lsusb -v shows no iProduct"
    fields["iProduct"], fields["product"] = product[1], product[2].strip()
    return fields


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_describe_matches_sysfs(usbipd: str, backing_file: tuple[Path, bytes], kind: str) -> None:
    image, _ = backing_file
    with BUILDERS[kind](image) as gadget:
        from_sysfs = _sysfs.descriptors(gadget.device)
        listed = _lsusb(gadget.spec.vid, gadget.spec.pid)
        with _usbip.exported(gadget.busid) as busid:
            # usbip-host leaves the device's node (and its descriptors) on the source bus.
            assert _sysfs.descriptors(gadget.device) == from_sysfs
            described = _describe(usbipd, busid)
    device = described["device"]
    configurations = described["configurations"]
    reported = bytes.fromhex(device["raw"]) + b"".join(
        bytes.fromhex(configuration["raw"]) for configuration in configurations
    )
    assert len(bytes.fromhex(device["raw"])) == 18
    assert reported.hex() == from_sysfs.hex()
    assert (device["idVendor"], device["idProduct"]) == (gadget.spec.vid, gadget.spec.pid)
    assert (f"{device['idVendor']:04x}", f"{device['idProduct']:04x}") == (
        listed["idVendor"],
        listed["idProduct"],
    )
    assert str(device["iProduct"]) == listed["iProduct"]
    product = described["strings"][LANGID_EN_US][str(device["iProduct"])]
    assert product == listed["product"] == gadget.spec.product
