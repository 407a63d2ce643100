"""What a board needs before a gadget can be plugged: one check per need, each with a fix.

Every path is read under ``root`` (``/`` on the board; a test tree in tests), so a check is a
function of files: /proc/mounts, /sys/module, /lib/modules/RELEASE, /sys/class/udc and
/sys/bus/platform/drivers/dwc2. Nothing here writes or loads anything.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from usbip_gadget.gadget._udc import list_udcs, udc_function

MODULES = ("libcomposite", "usb_f_fs", "gadgetfs")
MIN_KERNEL = (5, 10)
MIN_PYTHON = (3, 11)
MIN_FREE_BYTES = 1 << 20
OVERLAY_FIX = (
    "on a Raspberry Pi, add dtoverlay=dwc2,dr_mode=peripheral to config.txt"
    " (configfs/setup-board), reboot"
)


@dataclass(frozen=True, slots=True)
class Check:
    """One need: met or not, what was seen, and how to meet it."""

    name: str
    ok: bool
    seen: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        text = f"{mark} {self.name:<12} {self.seen}"
        return text if self.ok or not self.fix else f"{text}; fix: {self.fix}"


@dataclass(frozen=True, slots=True)
class Board:
    """The board as the checks see it."""

    root: Path = Path("/")
    release: str = os.uname().release
    euid: int = os.geteuid()
    python: tuple[int, int] = (sys.version_info[0], sys.version_info[1])
    mount_root: Path = Path("/run/usbip-gadget")

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")


def check_root(board: Board) -> Check:
    ok = board.euid == 0
    return Check(
        "root", ok, "running as root" if ok else f"running as uid {board.euid}", "run it with sudo"
    )


def check_kernel(board: Board) -> Check:
    numbers = []
    for part in board.release.split("-")[0].split(".")[:2]:
        numbers.append(int(part) if part.isdigit() else 0)
    version = tuple(numbers + [0] * (2 - len(numbers)))
    ok = version >= MIN_KERNEL
    wanted = ".".join(map(str, MIN_KERNEL))
    return Check(
        "kernel",
        ok,
        f"Linux {board.release}" + ("" if ok else f", older than {wanted}"),
        f"a kernel {wanted} or later (Raspberry Pi OS bookworm ships 6.1)",
    )


def _mounts(board: Board) -> list[list[str]]:
    try:
        text = board.path("/proc/mounts").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [line.split() for line in text.splitlines() if len(line.split()) >= 3]


def check_configfs(board: Board) -> Check:
    where = [fields[1] for fields in _mounts(board) if fields[2] == "configfs"]
    if "/sys/kernel/config" in where:
        return Check("configfs", True, "mounted on /sys/kernel/config")
    return Check(
        "configfs",
        False,
        "not mounted on /sys/kernel/config",
        "mount -t configfs none /sys/kernel/config",
    )


def _module_files(board: Board) -> set[str]:
    """Module names the running kernel can load or has built in."""
    names: set[str] = set()
    base = board.path(f"/lib/modules/{board.release}")
    for index in ("modules.dep", "modules.builtin"):
        try:
            text = (base / index).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            path = line.split(":", 1)[0].strip()
            if path:
                stem = path.rsplit("/", 1)[-1].split(".ko", 1)[0]
                names.add(stem.replace("-", "_"))
    return names


def check_modules(board: Board) -> Check:
    available = _module_files(board)
    loaded = [m for m in MODULES if board.path(f"/sys/module/{m}").is_dir()]
    missing = [m for m in MODULES if m not in loaded and m not in available]
    not_loaded = [m for m in MODULES if m not in loaded and m not in missing]
    if missing:
        return Check(
            "modules",
            False,
            f"{', '.join(missing)} not in this kernel",
            "install the kernel's modules package for this release",
        )
    seen = f"loaded: {', '.join(loaded) or 'none'}"
    if not_loaded:
        return Check(
            "modules",
            False,
            f"{seen}; not loaded: {', '.join(not_loaded)}",
            f"modprobe {' '.join(not_loaded)} (configfs/setup-board loads them at boot)",
        )
    return Check("modules", True, seen)


def _udcs(board: Board) -> dict[str, str]:
    """Each UDC → the gadget bound to it ("" when free, or when it cannot be read)."""
    sysfs = board.path("/sys/class/udc")
    return {name: udc_function(name, sysfs) or "" for name in list_udcs(sysfs)}


def check_udc(board: Board) -> Check:
    udcs = _udcs(board)
    if not udcs:
        return Check("controller", False, "no USB device controller in /sys/class/udc", OVERLAY_FIX)
    free = [name for name, bound in udcs.items() if not bound]
    listed = ", ".join(f"{n} ({'free' if not b else 'used by ' + b})" for n, b in udcs.items())
    if not free:
        return Check(
            "controller",
            False,
            listed,
            "stop the gadget that holds it, or unbind it (its configfs UDC file emptied)",
        )
    return Check("controller", True, listed)


def check_dwc2(board: Board) -> Check:
    driver = board.path("/sys/bus/platform/drivers/dwc2")
    try:
        devices = sorted(p.name for p in driver.iterdir() if "." in p.name)
    except OSError:
        devices = []
    if not devices:
        return Check("dwc2", True, "no dwc2 controller here (nothing to check)")
    udcs = _udcs(board)
    host = [d for d in devices if d not in udcs]
    if host:
        return Check("dwc2", False, f"{', '.join(host)} is in host mode", OVERLAY_FIX)
    return Check("dwc2", True, f"{', '.join(devices)} in peripheral mode")


def check_space(board: Board) -> Check:
    where = board.path(str(board.mount_root))
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        stat = os.statvfs(where)
    except OSError as exc:
        return Check("mounts", False, f"cannot read {where}: {exc.strerror}", "check /run")
    free = stat.f_bavail * stat.f_frsize
    ok = free >= MIN_FREE_BYTES and stat.f_favail > 16
    seen = f"{free >> 20} MiB and {stat.f_favail} inodes free under {board.mount_root}"
    return Check("mounts", ok, seen, f"free space on the filesystem of {board.mount_root}")


def check_python(board: Board) -> Check:
    ok = board.python >= MIN_PYTHON
    version = ".".join(map(str, board.python))
    wanted = ".".join(map(str, MIN_PYTHON))
    return Check("python", ok, f"Python {version}", f"Python {wanted} or later")


CHECKS: tuple[Callable[[Board], Check], ...] = (
    check_root,
    check_kernel,
    check_configfs,
    check_modules,
    check_udc,
    check_dwc2,
    check_space,
    check_python,
)


def board_checks(board: Board) -> list[Check]:
    """Every board check, in order."""
    return [check(board) for check in CHECKS]


__all__ = ["Board", "Check", "board_checks"]
