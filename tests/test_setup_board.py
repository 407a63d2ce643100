"""``configfs/setup-board`` against board trees: Raspberry Pi OS bookworm (/boot/firmware) and
an older release (/boot), run twice (the second run changes nothing), a dwc2 overlay in host
mode replaced, and a tree that is not Raspberry Pi OS refused in one line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "configfs" / "setup-board"
OVERLAY = "dtoverlay=dwc2,dr_mode=peripheral"
# Like the end of a recent stock config.txt: filters that must not swallow the overlay.
STOCK = (
    "dtparam=audio=on\ncamera_auto_detect=1\n\n"
    "[cm4]\notg_mode=1\n\n"
    "[cm5]\ndtoverlay=dwc2,dr_mode=host\n"
)
MODULES = ["libcomposite", "usb_f_fs", "gadgetfs"]


def run(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--root", str(root)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def modules_loaded(root: Path) -> list[str]:
    text = (root / "etc/modules-load.d/usbip-gadget.conf").read_text()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("boot", ["boot/firmware", "boot"])
def test_a_board_is_set_up_once_and_a_second_run_does_nothing(tmp_path: Path, boot: str) -> None:
    config = tmp_path / boot / "config.txt"
    config.parent.mkdir(parents=True)
    config.write_text("dtparam=audio=on\n[all]\n")
    first = run(tmp_path)
    assert first.returncode == 0, first.stderr
    text = config.read_text()
    assert text.startswith("dtparam=audio=on\n[all]\n")
    assert text.endswith(f"\n[all]\n{OVERLAY}\n")
    assert text.count(OVERLAY) == 1
    assert modules_loaded(tmp_path) == MODULES
    assert first.stdout.splitlines()[-1] == "setup-board: reboot needed (config.txt changed)"

    second = run(tmp_path)
    assert second.returncode == 0, second.stderr
    assert config.read_text() == text
    assert f"already has {OVERLAY}" in second.stdout
    assert "is up to date" in second.stdout
    assert second.stdout.splitlines()[-1] == "setup-board: nothing changed; no reboot needed"


def test_another_dwc2_overlay_is_replaced_and_the_overlay_applies_to_every_board(
    tmp_path: Path,
) -> None:
    config = tmp_path / "boot/firmware/config.txt"
    config.parent.mkdir(parents=True)
    config.write_text(STOCK)
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "replacing dtoverlay=dwc2,dr_mode=host" in done.stdout
    lines = config.read_text().splitlines()
    assert [line for line in lines if "dwc2" in line] == [OVERLAY]
    # Last, after an [all] of its own: no [cm4]/[cm5] filter above it applies to it.
    assert lines[-2:] == ["[all]", OVERLAY]
    assert "otg_mode=1" in lines  # other settings stay
    assert run(tmp_path).stdout.splitlines()[-1].endswith("no reboot needed")


def test_stale_modules_file_is_rewritten_without_a_reboot_for_it(tmp_path: Path) -> None:
    config = tmp_path / "boot/firmware/config.txt"
    config.parent.mkdir(parents=True)
    config.write_text(f"[all]\n{OVERLAY}\n")
    modules = tmp_path / "etc/modules-load.d/usbip-gadget.conf"
    modules.parent.mkdir(parents=True)
    modules.write_text("libcomposite\n")
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert modules_loaded(tmp_path) == MODULES
    assert done.stdout.splitlines()[-1] == "setup-board: done; no reboot needed"


def test_a_tree_without_config_txt_is_refused_in_one_line(tmp_path: Path) -> None:
    done = run(tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("setup-board: no config.txt in ")
    assert not (tmp_path / "etc").exists()


def test_unknown_arguments_are_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(SCRIPT), "--rot", str(tmp_path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == "setup-board: unknown argument '--rot' (see --help)\n"
