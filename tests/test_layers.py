"""The package's rooms import only downward, and only each other's public faces.

Read from the source with ``ast`` (nothing is imported): for every module, which
``usbip_gadget`` modules it imports, checked against the rooms each room may use.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "usbip_gadget"

# Shared plumbing at the top level that any room may use.
_BASE = frozenset({"_errors", "_groups"})

# Room → the rooms it may import (besides itself). Lower layers first.
ALLOWED: dict[str, frozenset[str]] = {
    "_errors": frozenset(),
    "_groups": frozenset({"_errors"}),
    "protocol": _BASE,
    "usb": frozenset({"_errors"}),
    "_tls": _BASE,
    "_ws": _BASE,
    "_net": _BASE | {"protocol", "_tls", "_ws"},
    "usbredir": frozenset({"_errors", "protocol", "usb"}),
    "client": _BASE | {"_net", "protocol", "usb", "usbredir"},
    "gadget": _BASE | {"usb"},
    "server": _BASE | {"_net", "protocol", "usb", "usbredir"},
    "testing": _BASE | {"_net", "protocol", "usb", "gadget", "server", "client"},
    "bridge": _BASE | {"_net", "protocol", "usb", "client", "gadget"},
    "service": frozenset({"_errors"}),
    "cli": _BASE | {"_net", "protocol", "usb", "client", "gadget", "server", "bridge", "service"},
    "__main__": frozenset({"cli"}),
    "__init__": _BASE,
}


@dataclass(frozen=True)
class Edge:
    module: str  # dotted, below usbip_gadget: "bridge._pumps"
    imported: str  # dotted, below usbip_gadget: "gadget" or "gadget._aio"
    line: int

    @property
    def room(self) -> str:
        return self.module.split(".")[0]

    @property
    def target_room(self) -> str:
        return self.imported.split(".")[0]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def edges_of(source: str, module: str) -> list[Edge]:
    """The ``usbip_gadget`` imports in ``source``, as made by ``module``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
            # ``from usbip_gadget.gadget import _aio`` imports a module, not a name.
            names += [
                f"{node.module}.{a.name}"
                for a in node.names
                if a.name.startswith("_") and not a.name.endswith("__")
            ]
        for name in names:
            if name == "usbip_gadget" or name.startswith("usbip_gadget."):
                below = name.removeprefix("usbip_gadget").removeprefix(".")
                found.append(Edge(module, below or "__init__", node.lineno))
    return found


def all_edges() -> list[Edge]:
    return [
        edge
        for path in sorted(PACKAGE.rglob("*.py"))
        for edge in edges_of(path.read_text(), _module_name(path))
    ]


def _show(edge: Edge) -> str:
    return f"{edge.module}:{edge.line} imports {edge.imported}"


def upward(edges: list[Edge]) -> list[str]:
    """Imports of a room that its room may not use."""
    return [
        _show(e)
        for e in edges
        if e.target_room != e.room
        and e.imported != "__init__"
        and e.target_room not in ALLOWED.get(e.room, frozenset())
    ]


def private(edges: list[Edge]) -> list[str]:
    """Imports of another room's private modules."""
    return [
        _show(e)
        for e in edges
        if e.target_room != e.room
        and not e.target_room.startswith("_")
        and any(part.startswith("_") for part in e.imported.split(".")[1:])
    ]


def bridge_past_gadget(edges: list[Edge]) -> list[str]:
    """The bridge importing anything of the gadget room but its package."""
    return [
        _show(e)
        for e in edges
        if e.room == "bridge" and e.target_room == "gadget" and e.imported != "gadget"
    ]


def backend_crossings(edges: list[Edge]) -> list[str]:
    """A kernel backend importing the other one, or the gadget package above it."""
    wrong = []
    for e in edges:
        parts = e.module.split(".")
        if parts[0] != "gadget" or len(parts) < 2 or parts[1] not in ("functionfs", "gadgetfs"):
            continue
        other = "gadgetfs" if parts[1] == "functionfs" else "functionfs"
        if e.imported == "gadget" or e.imported.startswith(f"gadget.{other}"):
            wrong.append(_show(e))
    return wrong


RULES = (upward, private, bridge_past_gadget, backend_crossings)


def test_the_check_sees_the_whole_package() -> None:
    edges = all_edges()
    rooms = {edge.room for edge in edges}
    assert {"protocol", "usb", "client", "gadget", "server", "bridge", "cli"} <= rooms
    assert len(edges) > 150
    assert rooms <= set(ALLOWED), rooms - set(ALLOWED)


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_the_package_keeps_the_rule(rule: Callable[[list[Edge]], list[str]]) -> None:
    assert rule(all_edges()) == []


_BRIDGE_FFS = "from usbip_gadget.gadget.functionfs import FfsFlag"
_CROSSING = "import usbip_gadget.gadget.functionfs._blob"


@pytest.mark.parametrize(
    ("module", "line", "rule"),
    [
        ("usb._config", "from usbip_gadget.client import RemoteDevice", upward),
        ("gadget._choose", "from usbip_gadget.bridge import Bridge", upward),
        ("server._server", "from usbip_gadget.client import open_connection", upward),
        ("bridge._pumps", "from usbip_gadget.gadget._aio import Aio", private),
        ("cli", "from usbip_gadget.gadget import _udc", private),
        (
            "bridge._bridge",
            "from usbip_gadget.gadget.functionfs import FfsFlag",
            bridge_past_gadget,
        ),
        ("gadget.functionfs._gadget", "from usbip_gadget.gadget import Remap", backend_crossings),
        (
            "gadget.gadgetfs._layout",
            "import usbip_gadget.gadget.functionfs._blob",
            backend_crossings,
        ),
    ],
)
def test_each_rule_catches_a_wrong_import(
    module: str, line: str, rule: Callable[[list[Edge]], list[str]]
) -> None:
    assert rule(edges_of(line, module)) == [
        f"{module}:1 imports {edges_of(line, module)[-1].imported}"
    ]
