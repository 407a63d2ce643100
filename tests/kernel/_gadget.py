"""Source devices for the kernel tier: configfs gadgets bound to a dummy UDC.

Each builder is a context manager. Every configfs path it creates is recorded and removed in
reverse on exit (the UDC is unbound first), carrying on past errors; the errors are raised
together once everything that could be removed is gone.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import _sysfs

CONFIGFS = Path("/sys/kernel/config")
GADGETS = CONFIGFS / "usb_gadget"
LANG_EN_US = "0x409"
SOURCE_UDC = "dummy_udc.0"
SPARE_UDC = "dummy_udc.2"  # where a source device moves to get a new bus ID
ENUMERATION_TIMEOUT_S = 30.0

VID_LINUX_FOUNDATION = 0x1D6B
# One product ID per source gadget, so each can be found on any bus by idVendor:idProduct.
PID_STORAGE = 0x0104
PID_KEYBOARD = 0x0105
PID_SERIAL = 0x0106
PID_COMPOSITE = 0x0107
PID_NETWORK = 0x0108
PID_PLACEHOLDER = 0x0109
# NetChip's Gadget Zero IDs, which the host-side usbtest driver binds to (usbtest.c).
VID_NETCHIP = 0x0525
PID_GADGET_ZERO = 0xA4A0

BACKING_SIZE = 16 * 1024 * 1024

# The boot keyboard report descriptor (HID 1.11 appendix B.1, as in the kernel's gadget_hid.rst):
# modifiers, a reserved byte, five LEDs (output) and six key codes.
BOOT_KEYBOARD_REPORT_DESC = bytes.fromhex(
    "05 01 09 06 a1 01 05 07 19 e0 29 e7 15 00 25 01 75 01 95 08 81 02 95 01 75 08 81 03"
    " 95 05 75 01 05 08 19 01 29 05 91 02 95 01 75 03 91 03"
    " 95 06 75 08 15 00 25 65 05 07 19 00 29 65 81 00 c0"
)
assert len(BOOT_KEYBOARD_REPORT_DESC) == 63

# bDeviceClass/SubClass/Protocol for a device whose functions are grouped by IADs (USB IAD ECN).
IAD_DEVICE_CLASS = (0xEF, 0x02, 0x01)


@dataclass(frozen=True)
class Function:
    """A configfs function: ``functions/<kind>.<instance>`` and the attributes to write in it."""

    kind: str
    instance: str
    attributes: tuple[tuple[str, str | bytes], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.instance}"


@dataclass(frozen=True)
class GadgetSpec:
    """What a source gadget looks like on the bus."""

    name: str
    vid: int
    pid: int
    product: str
    functions: tuple[Function, ...]
    device_class: tuple[int, int, int] = (0, 0, 0)
    manufacturer: str = "usbip-gadget kernel tier"
    serial: str = "0123456789"


@dataclass(frozen=True)
class Gadget:
    """A bound gadget and the device the host side of its UDC made of it."""

    spec: GadgetSpec
    path: Path
    udc: str
    device: Path

    @property
    def busid(self) -> str:
        return self.device.name

    def function_dir(self, instance: str) -> Path:
        (match,) = (f for f in self.spec.functions if f.instance == instance)
        return self.path / "functions" / match.name


@dataclass
class _ConfigfsTree:
    """Creates configfs nodes and remembers them, to remove them in reverse."""

    root: Path
    created: list[Path] = field(default_factory=list)

    def mkdir(self, relative: str) -> Path:
        path = self.root / relative
        path.mkdir()
        self.created.append(path)
        return path

    def symlink(self, target: Path, relative: str) -> None:
        link = self.root / relative
        link.symlink_to(target)
        self.created.append(link)

    def write(self, relative: str, value: str | bytes) -> None:
        data = value.encode() if isinstance(value, str) else value
        with open(self.root / relative, "wb", buffering=0) as attribute:
            attribute.write(data)

    def remove(self) -> None:
        """Unbinds the UDC, then removes every recorded node, newest first."""
        errors: list[str] = []
        udc = self.root / "UDC"
        if _sysfs.read_text(udc):
            try:
                self.write("UDC", "\n")
            except OSError as exc:
                errors.append(f"unbind {udc}: {exc}")
        for path in reversed(self.created):
            try:
                if path.is_symlink():
                    path.unlink()
                else:
                    path.rmdir()
            except OSError as exc:
                errors.append(f"remove {path}: {exc}")
        self.created.clear()
        if errors:
            raise OSError("gadget teardown: " + "; ".join(errors))


def _build(tree: _ConfigfsTree, spec: GadgetSpec) -> None:
    tree.mkdir(".")
    for attribute, value in (
        ("idVendor", f"0x{spec.vid:04x}"),
        ("idProduct", f"0x{spec.pid:04x}"),
        ("bcdDevice", "0x0100"),
        ("bcdUSB", "0x0200"),
        ("bDeviceClass", str(spec.device_class[0])),
        ("bDeviceSubClass", str(spec.device_class[1])),
        ("bDeviceProtocol", str(spec.device_class[2])),
    ):
        tree.write(attribute, value)
    strings = tree.mkdir(f"strings/{LANG_EN_US}").relative_to(tree.root)
    tree.write(f"{strings}/manufacturer", spec.manufacturer)
    tree.write(f"{strings}/product", spec.product)
    tree.write(f"{strings}/serialnumber", spec.serial)
    for function in spec.functions:
        tree.mkdir(f"functions/{function.name}")
        for relative, content in function.attributes:
            tree.write(f"functions/{function.name}/{relative}", content)
    tree.mkdir("configs/c.1")
    tree.write("configs/c.1/MaxPower", "100")
    tree.mkdir(f"configs/c.1/strings/{LANG_EN_US}")
    tree.write(f"configs/c.1/strings/{LANG_EN_US}/configuration", f"{spec.product} config")
    for function in spec.functions:
        tree.symlink(tree.root / "functions" / function.name, f"configs/c.1/{function.name}")


@contextlib.contextmanager
def bound_gadget(spec: GadgetSpec, udc: str = SOURCE_UDC) -> Iterator[Gadget]:
    """Builds ``spec`` in configfs, binds it to ``udc`` and waits until the host configured it."""
    tree = _ConfigfsTree(GADGETS / spec.name)
    buses = _sysfs.udc_host_buses(udc)
    try:
        _build(tree, spec)
        tree.write("UDC", udc)
        device = _sysfs.wait_for(
            lambda: _sysfs.configured_device(buses, spec.vid, spec.pid),
            ENUMERATION_TIMEOUT_S,
            f"{spec.name} ({spec.vid:04x}:{spec.pid:04x}) configured on bus {sorted(buses)}",
        )
        yield Gadget(spec=spec, path=tree.root, udc=udc, device=device)
    finally:
        try:
            tree.remove()
        finally:
            # The host side notices the disconnect asynchronously (hub_wq).
            _sysfs.wait_until(
                lambda: not _sysfs.find_devices(buses, spec.vid, spec.pid),
                ENUMERATION_TIMEOUT_S,
                f"{spec.name} gone from bus {sorted(buses)}",
            )


def mass_storage(backing: Path, instance: str = "disk") -> Function:
    """usb_f_mass_storage with one LUN backed by ``backing``."""
    return Function("mass_storage", instance, (("lun.0/file", str(backing)),))


def hid_keyboard(instance: str = "kbd") -> Function:
    """usb_f_hid as a boot keyboard (subclass 1, protocol 1, 8-byte reports)."""
    return Function(
        "hid",
        instance,
        (
            ("protocol", "1"),
            ("subclass", "1"),
            ("report_length", "8"),
            ("report_desc", BOOT_KEYBOARD_REPORT_DESC),
        ),
    )


def acm(instance: str = "serial") -> Function:
    """usb_f_acm: a CDC-ACM serial port, /dev/ttyGS<port_num> on the gadget side."""
    return Function("acm", instance)


def ecm(instance: str = "net") -> Function:
    """usb_f_ecm: CDC Ethernet. Its data interface has an empty setting 0 and the bulk
    endpoints in setting 1, which the host selects to start traffic (the gadget's netdev
    has carrier only while setting 1 is active)."""
    return Function(
        "ecm", instance, (("dev_addr", "02:00:5e:10:00:01"), ("host_addr", "02:00:5e:10:00:02"))
    )


def source_sink(instance: str = "bulk") -> Function:
    """usb_f_ss_lb's SourceSink: its bulk IN endpoint sources data and its bulk OUT endpoint
    sinks it, both in the mod-63 pattern (``pattern`` 1) that ``usbtest pattern=1`` checks. No
    isochronous attribute is set: on a controller without isochronous endpoints (dummy_hcd) the
    function drops its isochronous alternate setting and keeps the bulk one alone."""
    return Function("SourceSink", instance, (("pattern", "1"),))


def write_backing_file(path: Path, size: int = BACKING_SIZE, seed: int = 0x5EED) -> bytes:
    """Fills ``path`` with ``size`` reproducible pseudo-random bytes and returns them."""
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def storage_gadget(backing: Path) -> contextlib.AbstractContextManager[Gadget]:
    """A USB disk."""
    spec = GadgetSpec(
        "storage", VID_LINUX_FOUNDATION, PID_STORAGE, "Storage Gadget", (mass_storage(backing),)
    )
    return bound_gadget(spec)


def keyboard_gadget(udc: str = SOURCE_UDC) -> contextlib.AbstractContextManager[Gadget]:
    """A boot keyboard."""
    spec = GadgetSpec(
        "keyboard", VID_LINUX_FOUNDATION, PID_KEYBOARD, "Keyboard Gadget", (hid_keyboard(),)
    )
    return bound_gadget(spec, udc)


def serial_gadget() -> contextlib.AbstractContextManager[Gadget]:
    """A CDC-ACM serial port."""
    spec = GadgetSpec("serial", VID_LINUX_FOUNDATION, PID_SERIAL, "Serial Gadget", (acm(),))
    return bound_gadget(spec)


def network_gadget() -> contextlib.AbstractContextManager[Gadget]:
    """A CDC Ethernet adapter."""
    spec = GadgetSpec("network", VID_LINUX_FOUNDATION, PID_NETWORK, "Network Gadget", (ecm(),))
    return bound_gadget(spec)


def sourcesink_gadget(udc: str = SOURCE_UDC) -> contextlib.AbstractContextManager[Gadget]:
    """A bulk source and sink under Gadget Zero's IDs, for usbtest on the host side."""
    spec = GadgetSpec(
        "sourcesink", VID_NETCHIP, PID_GADGET_ZERO, "Source/Sink Gadget", (source_sink(),)
    )
    return bound_gadget(spec, udc)


def placeholder_gadget() -> contextlib.AbstractContextManager[Gadget]:
    """A SourceSink under IDs no host driver knows, holding the spare controller."""
    spec = GadgetSpec(
        "placeholder", VID_LINUX_FOUNDATION, PID_PLACEHOLDER, "Placeholder", (source_sink(),)
    )
    return bound_gadget(spec, SPARE_UDC)


@contextlib.contextmanager
def spare_udc() -> Iterator[str]:
    """The spare controller, free for the block; the placeholder is bound to it again after
    (the block must have freed it)."""
    placeholder = GADGETS / "placeholder"
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


def composite_gadget(backing: Path) -> contextlib.AbstractContextManager[Gadget]:
    """A serial port and a disk in one configuration."""
    functions: Sequence[Function] = (acm(), mass_storage(backing))
    spec = GadgetSpec(
        "composite",
        VID_LINUX_FOUNDATION,
        PID_COMPOSITE,
        "Composite Gadget",
        tuple(functions),
        device_class=IAD_DEVICE_CLASS,
    )
    return bound_gadget(spec)


def char_device(gadget: Gadget, instance: str) -> Path:
    """The /dev node of a function that exports ``dev`` (``major:minor``), such as hid."""
    numbers = _sysfs.read_text(gadget.function_dir(instance) / "dev")
    return _sysfs.char_device_node(numbers)


def serial_tty(gadget: Gadget, instance: str = "serial") -> Path:
    """The gadget side of an acm function: /dev/ttyGS<port_num>."""
    port = _sysfs.read_text(gadget.function_dir(instance) / "port_num")
    return Path(f"/dev/ttyGS{port}")


def remove_all_gadgets() -> list[str]:
    """Scrubs whatever is left in configfs (the safety net after a leaking test)."""
    errors: list[str] = []
    for gadget in sorted(GADGETS.iterdir()) if GADGETS.is_dir() else []:
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
