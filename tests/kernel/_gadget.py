"""Source devices for the kernel tier: the project's gadget templates (``usbip-gadget gadget
up``), built and bound to a dummy UDC through its own configfs code, and taken down after.

Each builder is a context manager that waits until the host side configured the device and,
on exit, removes the gadget (``gadget down``) and waits until the host has seen it go.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from usbip_gadget.gadget import GadgetTemplate, gadget_up, load_template, remove_gadget

from . import _sysfs

CONFIGFS = Path("/sys/kernel/config")
GADGETS = CONFIGFS / "usb_gadget"
SOURCE_UDC = "dummy_udc.0"
SPARE_UDC = "dummy_udc.2"  # where a source device moves to get a new bus ID
ENUMERATION_TIMEOUT_S = 30.0

VID_LINUX_FOUNDATION = 0x1D6B
PID_PLACEHOLDER = 0x0109
PLACEHOLDER = "placeholder"
# NetChip's Gadget Zero IDs, which the host-side usbtest driver binds to (usbtest.c).
VID_NETCHIP = 0x0525
PID_GADGET_ZERO = 0xA4A0

BACKING_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Gadget:
    """A bound gadget and the device the host side of its UDC made of it."""

    spec: GadgetTemplate
    path: Path
    udc: str
    device: Path

    @property
    def busid(self) -> str:
        return self.device.name

    def function_dir(self, instance: str) -> Path:
        (match,) = (f for f in self.spec.functions if f.instance == instance)
        return self.path / "functions" / match.name


@contextlib.contextmanager
def bound_gadget(spec: GadgetTemplate, udc: str = SOURCE_UDC) -> Iterator[Gadget]:
    """``gadget up`` of ``spec`` on ``udc`` for the block, once the host configured it."""
    buses = _sysfs.udc_host_buses(udc)
    path = gadget_up(spec, name=spec.name, udc=udc, root=GADGETS)
    try:
        device = _sysfs.wait_for(
            lambda: _sysfs.configured_device(buses, spec.vid, spec.pid),
            ENUMERATION_TIMEOUT_S,
            f"{spec.name} ({spec.vid:04x}:{spec.pid:04x}) configured on bus {sorted(buses)}",
        )
        yield Gadget(spec=spec, path=path, udc=udc, device=device)
    finally:
        try:
            remove_gadget(spec.name, root=GADGETS)
        finally:
            # The host side notices the disconnect asynchronously (hub_wq).
            _sysfs.wait_until(
                lambda: not _sysfs.find_devices(buses, spec.vid, spec.pid),
                ENUMERATION_TIMEOUT_S,
                f"{spec.name} gone from bus {sorted(buses)}",
            )


def _template(name: str, **values: str) -> GadgetTemplate:
    return load_template(name, values)


def report_descriptor(name: str = "keyboard") -> bytes:
    """The HID report descriptor a template writes."""
    (function,) = _template(name).functions
    return next(v for k, v in function.attributes if k == "report_desc" and isinstance(v, bytes))


def write_backing_file(path: Path, size: int = BACKING_SIZE, seed: int = 0x5EED) -> bytes:
    """Fills ``path`` with ``size`` reproducible pseudo-random bytes and returns them."""
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def storage_gadget(backing: Path) -> contextlib.AbstractContextManager[Gadget]:
    """A USB disk (template ``disk``)."""
    return bound_gadget(_template("disk", file=str(backing)))


def keyboard_gadget(udc: str = SOURCE_UDC) -> contextlib.AbstractContextManager[Gadget]:
    """A boot keyboard (template ``keyboard``)."""
    return bound_gadget(_template("keyboard"), udc)


def serial_gadget() -> contextlib.AbstractContextManager[Gadget]:
    """A CDC-ACM serial port (template ``serial``)."""
    return bound_gadget(_template("serial"))


def network_gadget() -> contextlib.AbstractContextManager[Gadget]:
    """A CDC Ethernet adapter (template ``network``). Its data interface has an empty
    setting 0 and the bulk endpoints in setting 1, which the host selects to start traffic
    (the gadget's netdev has carrier only while setting 1 is active)."""
    return bound_gadget(_template("network"))


def sourcesink_gadget(udc: str = SOURCE_UDC) -> contextlib.AbstractContextManager[Gadget]:
    """A bulk source and sink under Gadget Zero's IDs, for usbtest on the host side
    (template ``sourcesink``)."""
    return bound_gadget(_template("sourcesink"), udc)


def printer_gadget() -> contextlib.AbstractContextManager[Gadget]:
    """A USB printer (template ``printer``): /dev/g_printerN on the gadget side."""
    return bound_gadget(_template("printer"))


def composite_gadget(backing: Path) -> contextlib.AbstractContextManager[Gadget]:
    """A serial port and a disk in one configuration (template ``serial-disk``)."""
    return bound_gadget(_template("serial-disk", file=str(backing)))


def placeholder_gadget() -> contextlib.AbstractContextManager[Gadget]:
    """A SourceSink under IDs no host driver knows, holding the spare controller."""
    spec = dataclasses.replace(
        _template("sourcesink"), name=PLACEHOLDER, vid=VID_LINUX_FOUNDATION, pid=PID_PLACEHOLDER
    )
    return bound_gadget(spec, SPARE_UDC)


@contextlib.contextmanager
def spare_udc() -> Iterator[str]:
    """The spare controller, free for the block; the placeholder is bound to it again after
    (the block must have freed it)."""
    placeholder = GADGETS / PLACEHOLDER
    buses = _sysfs.udc_host_buses(SPARE_UDC)
    (placeholder / "UDC").write_text("\n")
    _sysfs.wait_until(
        lambda: not _sysfs.find_devices(buses, VID_LINUX_FOUNDATION, PID_PLACEHOLDER),
        ENUMERATION_TIMEOUT_S,
        f"the placeholder gone from bus {sorted(buses)}",
    )
    try:
        yield SPARE_UDC
    finally:
        (placeholder / "UDC").write_text(SPARE_UDC)
        _sysfs.wait_for(
            lambda: _sysfs.configured_device(buses, VID_LINUX_FOUNDATION, PID_PLACEHOLDER),
            ENUMERATION_TIMEOUT_S,
            f"the placeholder back on bus {sorted(buses)}",
        )


def move(gadget: Gadget, udc: str) -> Path:
    """Unbinds ``gadget`` from its controller and binds it to ``udc``: the host sees it
    unplugged from one bus and plugged into another. Returns its new device (sysfs)."""
    spec = gadget.spec
    before, after = _sysfs.udc_host_buses(gadget.udc), _sysfs.udc_host_buses(udc)
    (gadget.path / "UDC").write_text("\n")
    _sysfs.wait_until(
        lambda: not _sysfs.find_devices(before, spec.vid, spec.pid),
        ENUMERATION_TIMEOUT_S,
        f"{spec.name} gone from bus {sorted(before)}",
    )
    (gadget.path / "UDC").write_text(udc)
    return _sysfs.wait_for(
        lambda: _sysfs.configured_device(after, spec.vid, spec.pid),
        ENUMERATION_TIMEOUT_S,
        f"{spec.name} configured on bus {sorted(after)}",
    )


def char_device(gadget: Gadget, instance: str) -> Path:
    """The /dev node of a function that exports ``dev`` (``major:minor``), such as hid."""
    numbers = _sysfs.read_text(gadget.function_dir(instance) / "dev")
    return _sysfs.char_device_node(numbers)


def serial_tty(gadget: Gadget, instance: str = "serial") -> Path:
    """The gadget side of an acm function: /dev/ttyGS<port_num>."""
    port = _sysfs.read_text(gadget.function_dir(instance) / "port_num")
    return Path(f"/dev/ttyGS{port}")


def remove_all_gadgets() -> list[str]:
    """Scrubs whatever is left in configfs (the safety net after a leaking test), but the
    placeholder on the spare controller."""
    errors: list[str] = []
    for gadget in sorted(GADGETS.iterdir()) if GADGETS.is_dir() else []:
        if gadget.name == PLACEHOLDER:
            continue
        config_nodes = sorted(gadget.glob("configs/*/*"))
        steps: list[Path] = [gadget / "UDC"] if _sysfs.read_text(gadget / "UDC") else []
        steps += [p for p in config_nodes if p.is_symlink()]
        steps += sorted(gadget.glob("configs/*/strings/*")) + sorted(gadget.glob("configs/*"))
        steps += sorted(gadget.glob("functions/*")) + sorted(gadget.glob("strings/*"))
        steps.append(gadget)
        for step in steps:
            try:
                if step.name == "UDC":
                    step.write_text("\n")
                elif step.is_symlink():
                    step.unlink()
                else:
                    os.rmdir(step)
            except OSError as exc:
                errors.append(f"{step}: {exc}")
    return errors
