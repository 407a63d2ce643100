"""The state every kernel test must leave behind: no gadget, no import, no export (but the
placeholder that holds the spare controller for the whole session)."""

from __future__ import annotations

from . import _gadget, _sysfs, _usbip


def leftovers() -> list[str]:
    """Everything a test can leave behind, as readable items ([] when the bed is clean)."""
    found = [
        f"gadget {p.name}"
        for p in sorted(_gadget.GADGETS.iterdir())
        if p.name != _gadget.PLACEHOLDER
    ]
    found += [f"vhci port {p.port} ({p.local_busid})" for p in _usbip.ports_in_use()]
    found += [f"usbip-host holds {busid}" for busid in _usbip.held_by_usbip_host()]
    dummy_buses = _sysfs.controller_buses("dummy_hcd.*")
    placeholder = _sysfs.find_devices(
        dummy_buses, _gadget.VID_LINUX_FOUNDATION, _gadget.PID_PLACEHOLDER
    )
    found += [
        f"device {d.name} on a dummy bus"
        for d in _sysfs.usb_devices(dummy_buses)
        if d not in placeholder
    ]
    return found


def scrub() -> list[str]:
    """Detaches, unbinds and removes whatever is left; returns the errors met on the way."""
    return _usbip.release_everything() + _gadget.remove_all_gadgets()
