"""``install-service``: the units in place, each service named checked and enabled."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from usbip_gadget.cli._args import check_together, parse
from usbip_gadget.cli._parser import usage_error
from usbip_gadget.service import CONFIG_DIR, ServiceError, install_units

#: Services with a unit of their own; any other name is an instance of usbip-gadget@.
_OWN_UNITS = {"serve": "usbip-gadget-serve.service", "listen": "usbip-gadget-listen.service"}


def unit_of(name: str) -> tuple[str, str]:
    """(the unit, the command its config file is for) of service ``name``."""
    if name in _OWN_UNITS:
        return _OWN_UNITS[name], name
    return f"usbip-gadget@{name}.service", "attach"


def cmd_install_service(args: argparse.Namespace) -> int:
    root = Path(args.root)
    program = Path(args.program) if args.program else _this_program()
    units = []
    for name in args.services:
        unit, command = unit_of(name)
        config = root / CONFIG_DIR / f"{name}.toml"
        _check_config(config, command, name)
        units.append(unit)
    for path in install_units(root, program):
        print(f"installed {path}")
    if not units:
        return 0
    live = root == Path("/") and Path("/run/systemd/system").is_dir()
    enable = ["systemctl", "enable", *([] if args.no_start else ["--now"]), *units]
    if not live:
        print(f"to enable: systemctl daemon-reload && {' '.join(enable)}")
        return 0
    for argv in (["systemctl", "daemon-reload"], enable):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            detail = done.stderr.strip().splitlines()
            raise ServiceError(f"{' '.join(argv)} failed: {detail[-1] if detail else done}")
    print(f"enabled{'' if args.no_start else ' and started'}: {' '.join(units)}")
    return 0


def _check_config(config: Path, command: str, name: str) -> None:
    """The config file read and checked as the service's command will read it at boot."""
    if not config.is_file():
        usage_error(f"install-service {name}: write {config} first (see examples/)")
    check_together(parse([command, "--config", str(config)]))


def _this_program() -> Path:
    beside = Path(sys.executable).parent / "usbip-gadget"
    if beside.is_file():
        return beside.absolute()
    found = shutil.which("usbip-gadget")
    if found is None:
        raise ServiceError("cannot find the usbip-gadget program", hint="give --program PATH")
    return Path(found).absolute()
