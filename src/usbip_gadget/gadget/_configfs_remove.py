"""Taking down a configfs gadget tree that outlived the process that made it (``gadget
down``, or a tree left behind by a crash): unbound first, then every user-made node removed
in the order configfs allows, past any failure."""

from __future__ import annotations

from pathlib import Path

from usbip_gadget._errors import GadgetError
from usbip_gadget.gadget._configfs import (
    _LEFTOVER_HINT,
    GADGET_ROOT,
    _remove,
    _stale_nodes,
    _write_attribute,
    configfs_error,
)


def remove_gadget(name: str, *, root: Path = GADGET_ROOT) -> None:
    """Unbind gadget ``name`` and remove its tree (one that outlived the process that made
    it, like ``gadget up``'s); ``GadgetError`` if there is none or a node cannot go."""
    if not name or "/" in name or name in {".", ".."}:
        raise GadgetError(f"invalid gadget name {name!r}", hint="use letters, digits, - and _")
    path = root / name
    if not path.is_dir():
        raise GadgetError(f"no gadget {path}", hint=f"see {root}")
    udc = path / "UDC"
    try:
        if udc.read_text(encoding="utf-8").strip():
            _write_attribute(udc, "\n")
    except OSError as exc:
        raise configfs_error("unbind", udc, exc, root=root) from None
    failures = [f for node in _stale_nodes(path) if (f := _remove(node)) is not None]
    if failures:
        message = f"could not remove gadget {path}: " + "; ".join(failures)
        raise GadgetError(message, hint=_LEFTOVER_HINT)
