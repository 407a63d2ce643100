"""Every error the package raises at its users is importable from ``usbip_gadget``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import usbip_gadget
from usbip_gadget import UsbipGadgetError

# Raised and caught inside one room, never seen outside it.
INTERNAL = {"DeadlineExpired", "HostGone"}


def test_every_error_class_is_importable_from_the_root() -> None:
    found: dict[str, str] = {}
    for info in pkgutil.walk_packages(usbip_gadget.__path__, "usbip_gadget."):
        if info.name.endswith("__main__") or info.name.startswith("usbip_gadget.testing"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, UsbipGadgetError):
                found[name] = value.__module__
    assert "NoMatchingDevice" in found  # the walk reached the rooms
    missing = {n: m for n, m in found.items() if n not in INTERNAL and not hasattr(usbip_gadget, n)}
    assert missing == {}
