"""Teardown hygiene: a test leaves no gadget, no vhci port and no usbip-host binding behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import _bed, _gadget, _sysfs, _usbip

pytestmark = pytest.mark.kernel


@pytest.mark.timeout(180)
def test_import_cycle_leaves_nothing(usbipd: str, backing_file: tuple[Path, bytes]) -> None:
    image, _ = backing_file
    with _gadget.storage_gadget(image) as gadget:
        vid, pid = gadget.spec.vid, gadget.spec.pid
        with (
            _usbip.exported(gadget.busid) as busid,
            _usbip.attached(usbipd, busid, vid, pid) as imported,
        ):
            during = _bed.leftovers()
        # The check sees each kind of leftover while the import is up.
        assert f"gadget {gadget.spec.name}" in during
        assert f"usbip-host holds {busid}" in during
        assert any(item.startswith(f"vhci port {imported.port} ") for item in during)
        assert f"device {busid} on a dummy bus" in during
        # Leaving the import and the export releases the port and gives the device back.
        assert _usbip.ports_in_use() == []
        assert _usbip.held_by_usbip_host() == []
        assert not _sysfs.find_devices(_sysfs.vhci_buses(), vid, pid)
        assert _sysfs.find_devices(_sysfs.udc_host_buses(gadget.udc), vid, pid)
    assert not gadget.path.exists()
    assert _bed.leftovers() == []
