"""The usb room is a leaf: the standard library and ``usbip_gadget._errors``, nothing else."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import usbip_gadget.usb

ROOM = Path(usbip_gadget.usb.__file__).parent
MODULES = sorted(ROOM.glob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    """Full names of the modules ``node`` imports (``from pkg import mod`` names pkg.mod)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if base == "usbip_gadget.usb":
        return [f"{base}.{alias.name}" for alias in node.names]
    return [base]


def _imports(path: Path) -> list[str]:
    nodes = (n for n in ast.walk(_tree(path)) if isinstance(n, ast.Import | ast.ImportFrom))
    return [name for node in nodes for name in _imported(node)]


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_imports_only_the_standard_library_and_errors(path: Path) -> None:
    for name in _imports(path):
        stdlib = name.split(".")[0] in sys.stdlib_module_names
        assert stdlib or name == "usbip_gadget._errors" or name.startswith("usbip_gadget.usb.")


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_imports_are_at_module_level(path: Path) -> None:
    tree = _tree(path)
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            assert id(node) in top, f"{path.name}:{node.lineno} imports inside a block"


def test_modules_import_one_another_one_way() -> None:
    graph = {
        path.stem: {name.rpartition(".")[2] for name in _imports(path) if ".usb." in name}
        for path in MODULES
        if path.stem != "__init__"
    }
    done: list[str] = []
    while len(done) < len(graph):
        ready = [
            module for module, needs in graph.items() if module not in done and needs <= {*done}
        ]
        assert ready, f"import cycle among {sorted(set(graph) - set(done))}"
        done += ready
