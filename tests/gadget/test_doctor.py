"""``usbip-gadget doctor``'s board checks against the trees of real boards: a Pi Zero (dwc2
at 20980000.usb), a Pi 4 (fe980000.usb) in peripheral and in host mode, a dwc3 board and the
dummy controller of the test bed; each need met or failed with its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from usbip_gadget.cli import main
from usbip_gadget.gadget import Board, Check, board_checks

RELEASE = "6.6.51+rpt-rpi-v6"


def board_tree(
    root: Path,
    *,
    udcs: dict[str, str],
    dwc2: tuple[str, ...] = (),
    loaded: tuple[str, ...] = ("libcomposite", "usb_f_fs", "gadgetfs"),
    configfs: bool = True,
) -> Board:
    """A board's /proc, /sys and /lib/modules under ``root``; ``udcs`` maps each UDC to the
    gadget bound to it ("" when free)."""
    mounts = "sysfs /sys sysfs rw 0 0\nproc /proc proc rw 0 0\n"
    if configfs:
        mounts += "configfs /sys/kernel/config configfs rw,relatime 0 0\n"
    (root / "proc").mkdir()
    (root / "proc/mounts").write_text(mounts)
    modules = root / "lib/modules" / RELEASE
    modules.mkdir(parents=True)
    (modules / "modules.dep").write_text(
        "kernel/drivers/usb/gadget/libcomposite.ko.xz:\n"
        "kernel/drivers/usb/gadget/function/usb_f_fs.ko.xz: "
        "kernel/drivers/usb/gadget/libcomposite.ko.xz\n"
        "kernel/drivers/usb/gadget/legacy/gadgetfs.ko.xz:\n"
    )
    for name in loaded:
        (root / "sys/module" / name).mkdir(parents=True)
    for name, bound in udcs.items():
        entry = root / "sys/class/udc" / name
        entry.mkdir(parents=True)
        (entry / "function").write_text(bound + "\n")
    for device in dwc2:
        (root / "sys/bus/platform/drivers/dwc2" / device).mkdir(parents=True)
    if dwc2:
        (root / "sys/bus/platform/drivers/dwc2/uevent").write_text("")
    return Board(root=root, release=RELEASE, euid=0, python=(3, 11))


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


@pytest.mark.parametrize(
    ("udc", "dwc2"),
    [
        ("20980000.usb", ("20980000.usb",)),  # Pi Zero
        ("fe980000.usb", ("fe980000.usb",)),  # Pi 4
        ("a600000.usb", ()),  # a dwc3 board
        ("dummy_udc.0", ()),  # the test bed
    ],
)
def test_a_ready_board_passes_every_check(tmp_path: Path, udc: str, dwc2: tuple[str, ...]) -> None:
    checks = board_checks(board_tree(tmp_path, udcs={udc: ""}, dwc2=dwc2))
    assert [c.name for c in checks if not c.ok] == []
    names = by_name(checks)
    assert names["controller"].seen == f"{udc} (free)"
    assert names["modules"].seen == "loaded: libcomposite, usb_f_fs, gadgetfs"
    if dwc2:
        assert names["dwc2"].seen == f"{udc} in peripheral mode"


def test_a_pi_4_in_host_mode_fails_with_the_overlay_as_fix(tmp_path: Path) -> None:
    checks = by_name(board_checks(board_tree(tmp_path, udcs={}, dwc2=("fe980000.usb",))))
    assert not checks["dwc2"].ok
    assert checks["dwc2"].seen == "fe980000.usb is in host mode"
    assert "dtoverlay=dwc2,dr_mode=peripheral" in checks["dwc2"].line()
    assert not checks["controller"].ok


def test_a_fresh_board_says_what_to_load_and_mount(tmp_path: Path) -> None:
    board = board_tree(tmp_path, udcs={"20980000.usb": "g1"}, loaded=(), configfs=False)
    checks = by_name(board_checks(board))
    assert checks["configfs"].line() == (
        "FAIL configfs     not mounted on /sys/kernel/config;"
        " fix: mount -t configfs none /sys/kernel/config"
    )
    assert not checks["modules"].ok
    assert "fix: modprobe libcomposite usb_f_fs gadgetfs" in checks["modules"].line()
    assert checks["controller"].seen == "20980000.usb (used by g1)"
    assert not checks["controller"].ok


def test_a_kernel_without_the_modules_and_an_old_python_fail(tmp_path: Path) -> None:
    board_tree(tmp_path, udcs={"dummy_udc.0": ""}, loaded=())
    (tmp_path / "lib/modules" / RELEASE / "modules.dep").write_text("")
    checks = by_name(board_checks(Board(tmp_path, "4.19.0-old", euid=1000, python=(3, 9))))
    assert checks["modules"].seen == "libcomposite, usb_f_fs, gadgetfs not in this kernel"
    assert not checks["kernel"].ok
    assert checks["kernel"].seen == "Linux 4.19.0-old, older than 5.10"
    assert not checks["root"].ok
    assert checks["root"].line() == "FAIL root         running as uid 1000; fix: run it with sudo"
    assert not checks["python"].ok
    assert checks["configfs"].ok  # the tree itself is a ready board's


def test_built_in_modules_count_as_available(tmp_path: Path) -> None:
    board = board_tree(tmp_path, udcs={"dummy_udc.0": ""}, loaded=("libcomposite",))
    modules = tmp_path / "lib/modules" / RELEASE
    (modules / "modules.dep").write_text("")
    (modules / "modules.builtin").write_text(
        "kernel/drivers/usb/gadget/libcomposite.ko\n"
        "kernel/drivers/usb/gadget/function/usb_f_fs.ko\n"
        "kernel/drivers/usb/gadget/legacy/gadgetfs.ko\n"
    )
    check = by_name(board_checks(board))["modules"]
    # Available but not loaded: modprobe is the fix, not a new kernel.
    assert check.seen == "loaded: libcomposite; not loaded: usb_f_fs, gadgetfs"


def test_the_command_exits_1_unless_every_check_passes(capsys: pytest.CaptureFixture[str]) -> None:
    # This machine (no device controller) fails some check; every line is one check.
    code = main(["doctor"])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert code == (0 if all(line.startswith("ok ") for line in lines) else 1)
    assert [line.split()[1] for line in lines] == [
        "root", "kernel", "configfs", "modules", "controller", "dwc2", "mounts", "python", "pyusb",
    ]  # fmt: skip
    assert err == f"{sum(line.startswith('ok ') for line in lines)} of 9 checks pass\n"
