"""The USB device controllers (UDCs) a gadget can bind to: the entries of /sys/class/udc."""

from __future__ import annotations

from pathlib import Path

from usbip_gadget._errors import GadgetError

SYSFS_CLASS_UDC = Path("/sys/class/udc")

NO_UDC_HINT = "no UDC found: is dwc2 enabled (dtoverlay=dwc2 in config.txt)?"


def list_udcs(sysfs_class_udc: Path = SYSFS_CLASS_UDC) -> list[str]:
    """The names of the UDCs the kernel offers, sorted; empty if the class directory is absent."""
    try:
        return sorted(entry.name for entry in sysfs_class_udc.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise GadgetError(
            f"cannot list {sysfs_class_udc}: {exc.strerror}", hint="is sysfs mounted at /sys?"
        ) from None


def udc_function(udc: str, sysfs_class_udc: Path = SYSFS_CLASS_UDC) -> str | None:
    """The gadget driver bound to ``udc`` ("" when none), or None when it cannot be read (no
    such controller, or a kernel without the ``function`` attribute)."""
    try:
        return (sysfs_class_udc / udc / "function").read_text(encoding="utf-8").strip()
    except OSError:
        return None


def udc_is_free(udc: str, sysfs_class_udc: Path = SYSFS_CLASS_UDC) -> bool:
    """True when no gadget driver is bound to ``udc`` (its ``function`` attribute is empty)."""
    return udc_function(udc, sysfs_class_udc) == ""


def udc_driver(udc: str | None, sysfs_class_udc: Path = SYSFS_CLASS_UDC) -> str | None:
    """The kernel driver of a controller (``dummy_udc``, ``dwc2``), if it can be read."""
    if udc is None:
        return None
    try:
        return (sysfs_class_udc / udc / "device" / "driver").resolve(strict=True).name
    except OSError:
        return None


def choose_udc(requested: str | None, available: list[str]) -> str:
    """The UDC to bind to: ``requested`` if given, else the only one there is.

    Raises ``GadgetError`` when there is none, when there are several and none was
    requested, or when the requested one is not among ``available``.
    """
    if not available:
        raise GadgetError("no USB device controller found", hint=NO_UDC_HINT)
    names = ", ".join(available)
    if requested is None:
        if len(available) > 1:
            raise GadgetError(
                f"several USB device controllers ({names}): choose one with --udc",
                hint="the names are those in /sys/class/udc",
            )
        return available[0]
    if requested not in available:
        raise GadgetError(
            f"no USB device controller named {requested!r} (found: {names})",
            hint="choose one of the names in /sys/class/udc with --udc",
        )
    return requested
