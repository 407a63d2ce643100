"""Gadget templates: every shipped one loads and builds on the configfs double, goes away
again with ``remove_gadget``, and every mistake in a template is one named line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.gadget.test_configfs import ROOT, FakeConfigfs, install
from usbip_gadget._errors import GadgetError
from usbip_gadget.cli import main
from usbip_gadget.gadget import (
    LOCK_DIR_VARIABLE,
    TemplateError,
    gadget_lock,
    gadget_up,
    load_template,
    remove_gadget,
    template_names,
)

SHIPPED = ["disk", "keyboard", "network", "printer", "serial", "serial-disk", "sourcesink"]
VALUES = {"disk": {"file": "/srv/disk.img"}, "serial-disk": {"file": "/srv/disk.img"}}
# Read before pyfakefs hides the package's files.
LOADED = {name: load_template(name, VALUES.get(name, {})) for name in SHIPPED}
# The attribute files each function kind comes with (configfs makes them at mkdir).
FUNCTION_FILES = {
    "mass_storage": ("stall", "lun.0/file", "lun.0/ro"),
    "hid": ("protocol", "subclass", "report_length", "report_desc", "dev"),
    "acm": ("port_num",),
    "ecm": ("dev_addr", "host_addr", "ifname"),
    "printer": ("pnp_string", "q_len"),
    "SourceSink": ("pattern", "bulk_buflen"),
}


class TemplatesConfigfs(FakeConfigfs):
    """The configfs double, with each function directory's attribute files."""

    def _defaults(self, path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if path.parent.name == "functions" and str(path.parent.parent.parent) == self.root:
            files = FUNCTION_FILES[path.name.split(".")[0]]
            return files, tuple(sorted({f.split("/")[0] for f in files if "/" in f}))
        return super()._defaults(path)

    def makedir(self, dir_path: str | os.PathLike[str], mode: int = 0o777) -> None:
        path = Path(os.fspath(dir_path))
        files, groups = self._defaults(path)
        if not groups:
            super().makedir(dir_path, mode)
            return
        self._makedir(dir_path, mode)
        for name in groups:
            self._makedir(str(path / name))
            self.default_groups.add(str(path / name))
        for name in files:
            self.fs.create_file(path / name)

    def rmdir(self, target_directory: str, allow_symlink: bool = False) -> None:
        """A function's own default groups (``lun.0``) go with it, their files too."""
        path = Path(os.fspath(target_directory))
        if path.parent.name == "functions" and not self._bound(path):
            for group in [p for p in path.iterdir() if str(p) in self.default_groups]:
                for child in group.iterdir():
                    child.unlink()
        super().rmdir(target_directory, allow_symlink)


@pytest.fixture
def configfs(fs: FakeFilesystem, monkeypatch: pytest.MonkeyPatch) -> TemplatesConfigfs:
    return install(fs, monkeypatch, TemplatesConfigfs)


def test_the_shipped_templates_are_these() -> None:
    assert template_names() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_each_template_builds_binds_and_goes_away(name: str, configfs: TemplatesConfigfs) -> None:
    template = LOADED[name]
    path = gadget_up(template, name=name, udc="dummy_udc.0", root=ROOT)
    assert (path / "UDC").read_text() == "dummy_udc.0"
    assert (path / "idVendor").read_text() == f"0x{template.vid:04x}"
    assert (path / "strings/0x409/product").read_text() == template.product
    for function in template.functions:
        directory = path / "functions" / function.name
        assert (path / "configs/c.1" / function.name).resolve() == directory
        for relative, value in function.attributes:
            expected = value if isinstance(value, bytes) else value.encode()
            assert (directory / relative).read_bytes() == expected
    remove_gadget(name, root=ROOT)
    assert os.listdir(ROOT) == []


def test_the_values_reach_the_attributes() -> None:
    disk = load_template("disk", {"file": "/srv/a b.img"})
    assert disk.functions[0].attributes == (("lun.0/file", "/srv/a b.img"),)
    keyboard = load_template("keyboard")
    report = dict(keyboard.functions[0].attributes)["report_desc"]
    assert isinstance(report, bytes)
    assert (len(report), report[:4], report[-1:]) == (63, bytes.fromhex("05010906"), b"\xc0")
    composite = load_template("serial-disk", {"file": "d.img"})
    assert composite.device_class == (0xEF, 0x02, 0x01)
    assert [f.name for f in composite.functions] == ["acm.serial", "mass_storage.disk"]


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return str(path)


GOOD = (
    '[device]\nidVendor = 0x1234\nidProduct = 0x5678\n[[functions]]\nkind = "acm"\ninstance = "s"\n'
)


@pytest.mark.parametrize(
    ("text", "values", "error"),
    [
        ("colour = 1\n" + GOOD, {}, "unknown key colour (known: config, description, device, "),
        (GOOD.replace("0x5678", "0x15678"), {}, "idProduct: expected a number from 0 to 0xffff"),
        (GOOD.replace("idVendor = 0x1234\n", ""), {}, "device.idVendor is required"),
        ("[device]\nidVendor = 1\nidProduct = 2\n", {}, "functions: at least one [[functions]]"),
        (GOOD + '[strings]\nproduct = "${name}"\n', {}, "strings.product: no variable 'name'"),
        (GOOD + "[variables]\nname = {}\n", {}, " needs name: no help given (--set name=VALUE)"),
        (GOOD, {"name": "x"}, " has no variable 'name' (variables: none)"),
        (GOOD + 'attributes = { d = { hex = "zz" } }\n', {}, "functions[0].d: not hex"),
        (GOOD + "[strings]\nproduct = 7\n", {}, "strings.product: expected text"),
    ],
)
def test_a_bad_template_is_one_named_line(
    tmp_path: Path, text: str, values: dict[str, str], error: str
) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(TemplateError) as info:
        load_template(path, values)
    assert error in info.value.one_line()
    assert "\n" not in info.value.one_line()


def test_a_template_file_by_path_loads(tmp_path: Path) -> None:
    mine = load_template(_file(tmp_path, GOOD + '[strings]\nproduct = "Mine"\n'))
    assert (mine.name, mine.vid, mine.pid, mine.product) == ("mine", 0x1234, 0x5678, "Mine")


def test_the_command_lists_templates_and_refuses_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["gadget", "templates"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == SHIPPED
    assert main(["gadget", "up", "disk", "--udc", "dummy_udc.0"]) == 1
    assert capsys.readouterr().err == (
        "usbip-gadget: template disk needs file: the disk image (a file of any size; the host"
        " sees its size) (--set file=VALUE)\n"
    )
    with pytest.raises(SystemExit) as info:
        main(["gadget", "up", "serial", "--set", "novalue"])
    assert info.value.code == 2
    assert capsys.readouterr().err == "usbip-gadget: --set 'novalue': expected NAME=VALUE\n"


def test_down_of_a_missing_gadget_is_one_line(configfs: TemplatesConfigfs) -> None:
    with pytest.raises(GadgetError) as info:
        remove_gadget("nothing", root=ROOT)
    assert info.value.one_line() == f"no gadget {ROOT / 'nothing'} (see {ROOT})"


def test_down_refuses_the_gadget_of_a_running_attach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(LOCK_DIR_VARIABLE, str(tmp_path))
    with gadget_lock("usbip-gadget"):  # what a running attach holds
        assert main(["gadget", "down", "usbip-gadget"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("usbip-gadget: gadget usbip-gadget is in use by another usbip-gadget")
    assert err.count("\n") == 1
