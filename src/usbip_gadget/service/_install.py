"""Writing the units where systemd reads them, with the program's path filled in."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from usbip_gadget._errors import ServiceError

#: The units, each as shipped in ``units/``: one instance per device, serve, listen.
UNITS = ("usbip-gadget@.service", "usbip-gadget-serve.service", "usbip-gadget-listen.service")
#: Where they go and where their config files are, below the root (``/`` on a board).
UNIT_DIR = Path("etc/systemd/system")
CONFIG_DIR = Path("etc/usbip-gadget")
_PLACEHOLDER = "@PROGRAM@"


def render_unit(unit: str, program: Path) -> str:
    """The text of ``unit`` with ``program`` (an absolute path, no white space) in it."""
    if not program.is_absolute() or any(c.isspace() or c == "%" for c in str(program)):
        # systemd splits ExecStart= at white space and expands % specifiers.
        raise ServiceError(f"{program}: the program needs an absolute path without spaces or %")
    text = resources.files(__package__).joinpath("units", unit).read_text()
    return text.replace(_PLACEHOLDER, str(program))


def install_units(root: Path, program: Path) -> list[Path]:
    """Writes every unit into ``root/etc/systemd/system`` (mode 644) and makes
    ``root/etc/usbip-gadget``; returns the unit files written."""
    units = root / UNIT_DIR
    written = []
    try:
        units.mkdir(parents=True, exist_ok=True)
        (root / CONFIG_DIR).mkdir(parents=True, exist_ok=True)
        for unit in UNITS:
            path = units / unit
            partial = path.with_name(f".{unit}.new")
            partial.write_text(render_unit(unit, program))
            os.chmod(partial, 0o644)
            partial.replace(path)  # a unit is never seen half written
            written.append(path)
    except OSError as exc:
        raise ServiceError(f"cannot install the units in {units}: {exc.strerror}") from None
    return written
