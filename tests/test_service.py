"""``install-service`` and the units: written below a root, checked by ``systemd-analyze
verify`` (Debian's systemd package), each service's config file checked before anything is
written."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from usbip_gadget.cli import main
from usbip_gadget.service import UNITS, ServiceError, render_unit

PROGRAM = Path(sys.executable).parent / "usbip-gadget"
SCANNER = 'server = "scanner-host"\ndevice = "04a9:1909"\nreconnect = true\n'


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found is not None, "systemd-analyze is missing: install Debian's systemd package"
    return found


def _verify(*units: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_analyze(), "verify", *map(str, units)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _board(tmp_path: Path, **configs: str) -> Path:
    folder = tmp_path / "etc/usbip-gadget"
    folder.mkdir(parents=True)
    for name, text in configs.items():
        (folder / f"{name}.toml").write_text(text)
    return tmp_path


def test_the_units_are_installed_and_systemd_accepts_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _board(tmp_path, scanner=SCANNER, serve='allow = ["04a9:1909"]\n')
    argv = ["install-service", "scanner", "serve", "--root", str(root), "--program", str(PROGRAM)]
    assert main(argv) == 0
    units = root / "etc/systemd/system"
    out = capsys.readouterr().out.splitlines()
    assert out == [
        *(f"installed {units / unit}" for unit in UNITS),
        "to enable: systemctl daemon-reload && systemctl enable --now"
        " usbip-gadget@scanner.service usbip-gadget-serve.service",
    ]
    for unit in UNITS:
        assert stat.S_IMODE((units / unit).stat().st_mode) == 0o644
    template = (units / "usbip-gadget@.service").read_text()
    assert f"ExecStart={PROGRAM} attach --config /etc/usbip-gadget/%i.toml\n" in template
    serve = (units / "usbip-gadget-serve.service").read_text()
    assert f"ExecStart={PROGRAM} serve --config /etc/usbip-gadget/serve.toml\n" in serve
    instance = units / "usbip-gadget@scanner.service"  # verify reads the template for it
    done = _verify(instance, units / UNITS[1], units / UNITS[2])
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_verify_would_catch_a_unit_that_cannot_run(tmp_path: Path) -> None:
    """The check above can fail: a unit whose program is not there is refused."""
    unit = tmp_path / "usbip-gadget-serve.service"
    unit.write_text(render_unit(unit.name, Path("/nonexistent/usbip-gadget")))
    done = _verify(unit)
    assert done.returncode != 0
    assert "/nonexistent/usbip-gadget is not executable" in done.stderr


@pytest.mark.parametrize(
    ("configs", "argv", "error"),
    [
        ({}, ["kiosk"], "install-service kiosk: write {root}/etc/usbip-gadget/kiosk.toml first"),
        (
            {"kiosk": 'server = "h"\nbusid = 12\nreadahead = 0\n'},
            ["kiosk"],
            "{root}/etc/usbip-gadget/kiosk.toml: readahead: '0' is not a depth from 1 to 64",
        ),
        (
            {"serve": 'device = "04a9:1909"\n'},
            ["serve"],
            "{root}/etc/usbip-gadget/serve.toml: unknown key 'device'",
        ),
        ({"kiosk": 'device = "04a9:1909"\n'}, ["kiosk"], "attach: give HOST[:PORT], or server"),
        ({"serve": "port = 3241\n"}, ["serve"], "serve: nothing is exported unless selected"),
        (
            {"kiosk": 'server = "h"\nbusid = "1-1"\ntls-cert = "c.pem"\n'},
            ["kiosk"],
            "--tls-cert, --tls-key and --tls-ca go together",
        ),
    ],
)
def test_a_service_without_a_good_config_is_one_line_and_nothing_is_written(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    configs: dict[str, str],
    argv: list[str],
    error: str,
) -> None:
    root = _board(tmp_path, **configs)
    with pytest.raises(SystemExit) as info:
        main(["install-service", *argv, "--root", str(root), "--program", str(PROGRAM)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usbip-gadget: {error.format(root=root)}"), err
    assert err.count("\n") == 1
    assert not (root / "etc/systemd").exists()


def test_the_program_path_must_be_absolute() -> None:
    with pytest.raises(ServiceError, match="absolute path without spaces"):
        render_unit(UNITS[0], Path("bin/usbip-gadget"))
    with pytest.raises(ServiceError, match="absolute path without spaces"):
        render_unit(UNITS[0], Path("/opt/my tools/usbip-gadget"))
    with pytest.raises(ServiceError, match="without spaces or %"):
        render_unit(UNITS[0], Path("/opt/100%/usbip-gadget"))
