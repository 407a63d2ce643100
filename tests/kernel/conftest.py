"""Fixtures of the kernel tier, which runs inside the QEMU guest started by tools/kernel/run-tier.

Importing this module does nothing to the machine: modules are loaded, configfs mounted and
usbipd started only when a kernel test asks for them.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import _bed, _gadget, _sysfs, _usbip

OUT_ENV = "KERNEL_TIER_OUT"

# (module, parameters). The guest runs no udev, so the host-side drivers that would be loaded on
# hotplug (disk, serial, keyboard) are loaded here too. Loading gadgetfs only registers the file
# system: its gadget driver takes a UDC once a descriptor set is written to its ep0 file.
# usbmon records the URBs submitted on each bus (Documentation/usb/usbmon.rst). usbtest, the
# kernel's host-side test driver, binds Gadget Zero's IDs (a SourceSink gadget); with pattern=1
# it fills and checks every byte of its bulk transfers.
MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("dummy_hcd", ("num=3",)),
    ("libcomposite", ()),
    ("usb_f_mass_storage", ()),
    ("usb_f_hid", ()),
    ("usb_f_acm", ()),
    ("usb_f_ecm", ()),
    ("usb_f_fs", ()),
    ("usb_f_ss_lb", ()),
    ("usb_f_printer", ()),
    ("gadgetfs", ()),
    ("usbmon", ()),
    ("usbip-core", ()),
    ("usbip-host", ()),
    ("vhci-hcd", ()),
    ("usb-storage", ()),
    ("sd_mod", ()),
    ("cdc-acm", ()),
    ("cdc_ether", ()),
    ("usbhid", ()),
    ("usblp", ()),
    ("hid-generic", ()),
    ("evdev", ()),
    ("usbtest", ("pattern=1",)),
    ("loop", ()),
    ("ext4", ()),
)
MODPROBE_TIMEOUT_S = 60.0
DEBUGFS = Path("/sys/kernel/debug")
USBMON = DEBUGFS / "usb" / "usbmon"


def _out_dir() -> Path:
    out = os.environ.get(OUT_ENV)
    if not out:
        pytest.fail(
            f"the kernel tier runs inside its QEMU guest ({OUT_ENV} is unset): "
            "use make test-kernel",
            pytrace=False,
        )
    return Path(out)


def _load_modules(out: Path) -> None:
    for module, parameters in MODULES:
        done = subprocess.run(
            ["modprobe", module, *parameters],
            capture_output=True,
            text=True,
            timeout=MODPROBE_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            reason = f"{module}: {done.stderr.strip() or f'modprobe exited {done.returncode}'}"
            (out / "module-failure").write_text(reason + "\n")
            pytest.fail(f"kernel module failed to load: {reason}", pytrace=False)


def _mount(fstype: str, mountpoint: Path) -> None:
    """Mounts ``fstype`` on ``mountpoint`` unless it is mounted there already."""
    mounts = Path("/proc/mounts").read_text().split("\n")
    if not any(line.split()[1:3] == [str(mountpoint), fstype] for line in mounts if line):
        subprocess.run(
            ["mount", "-t", fstype, "none", str(mountpoint)],
            check=True,
            timeout=MODPROBE_TIMEOUT_S,
        )


def _mount_configfs() -> None:
    _mount("configfs", _gadget.CONFIGFS)
    if not _gadget.GADGETS.is_dir():
        pytest.fail(f"{_gadget.GADGETS} is missing after loading libcomposite", pytrace=False)


def _loopback_up() -> str:
    """Brings lo up if needed; says what it found."""
    flags = int(_sysfs.read_text(Path("/sys/class/net/lo/flags")) or "0", 16)
    if flags & 0x1:  # IFF_UP
        return "lo was up"
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=MODPROBE_TIMEOUT_S)
    return "lo was down, brought up"


def _bed_facts(lo_state: str) -> str:
    lines = [f"kernel {platform.release()}", lo_state]
    for udc in sorted(p.name for p in Path("/sys/class/udc").iterdir()):
        with_buses = sorted(_sysfs.udc_host_buses(udc)) if udc.startswith("dummy_udc.") else []
        lines.append(f"{udc}: host side on bus {with_buses}")
    lines.append(f"vhci buses {sorted(_sysfs.vhci_buses())}")
    lines.append(f"vhci ports {len(_usbip.vhci_ports())}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session", autouse=True)
def usb_stack() -> Path:
    """Loads the USB modules, mounts configfs, brings up lo; returns the writable output dir."""
    out = _out_dir()
    _load_modules(out)
    _mount_configfs()
    (out / "bed.txt").write_text(_bed_facts(_loopback_up()))
    return out


@pytest.fixture(scope="session", autouse=True)
def spare_udc_held(usb_stack: Path) -> Iterator[None]:
    """The third controller carries a placeholder gadget that no host driver binds, so that
    GadgetFS (which binds the first free controller) never takes it; a test that moves a
    device to another bus frees it for a while with ``_gadget.spare_udc``."""
    with _gadget.placeholder_gadget():
        yield


@pytest.fixture(scope="session")
def usbipd(usb_stack: Path) -> Iterator[str]:
    """usbipd for the whole session; yields the address to reach it on."""
    with _usbip.usbipd(usb_stack / "usbipd.log") as address:
        yield address


@pytest.fixture(scope="session")
def usbmon(usb_stack: Path) -> Path:
    """usbmon's directory in debugfs: ``<bus>u`` there streams that bus's URBs as text lines."""
    _mount("debugfs", DEBUGFS)
    if not USBMON.is_dir():
        pytest.fail(f"{USBMON} is missing after loading usbmon", pytrace=False)
    return USBMON


@pytest.fixture(autouse=True)
def clean_bed(usb_stack: Path) -> Iterator[None]:
    """Fails the test that leaves a gadget, a vhci port or a usbip-host binding behind.

    After a leak the bed is scrubbed, so the next test starts clean.
    """
    before = _bed.leftovers()
    if before:
        pytest.fail(f"the bed is not clean before the test: {before}", pytrace=False)
    yield
    left = _bed.leftovers()
    if left:
        errors = _bed.scrub()
        pytest.fail(f"the test left behind {left} (scrub errors: {errors})", pytrace=False)


@pytest.fixture
def backing_file(tmp_path: Path) -> tuple[Path, bytes]:
    """A 16 MiB disk image of reproducible pseudo-random bytes, and those bytes."""
    path = tmp_path / "disk.img"
    return path, _gadget.write_backing_file(path)
