"""Building and tearing down a configfs gadget, on pyfakefs taught a little configfs.

``FakeConfigfs`` hooks the fake filesystem's mkdir and rmdir to do what the kernel does: a
gadget, ``strings/<lang>`` or ``configs/c.N`` directory comes with its attribute files and
default groups, rmdir takes them away again, default groups cannot be removed by hand, a
directory with user-made children cannot be removed, and nothing in a bound gadget can be.
The hooks see ``os.mkdir``/``os.rmdir`` (which the code under test uses), not ``Path.mkdir``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TypeVar

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.usb.vectors import MASS_STORAGE_CONFIG, MASS_STORAGE_DEVICE
from usbip_gadget._errors import EndpointsExhausted, GadgetError
from usbip_gadget.gadget import _configfs
from usbip_gadget.gadget._configfs import (
    CONFIGFS_HINT,
    LIBCOMPOSITE_HINT,
    PERMISSION_HINT,
    UDC_BUSY_HINT,
    ConfigfsGadget,
    configfs_error,
)
from usbip_gadget.usb import DeviceSnapshot, Speed

ROOT = Path("/sys/kernel/config/usb_gadget")
GADGET = ROOT / "g1"

_GADGET_FILES = (
    *("bcdUSB", "bDeviceClass", "bDeviceSubClass", "bDeviceProtocol", "bMaxPacketSize0"),
    *("idVendor", "idProduct", "bcdDevice", "UDC", "max_speed"),
)
_GADGET_GROUPS = ("configs", "functions", "strings", "os_desc", "webusb")


class FakeConfigfs:
    """configfs's mkdir/rmdir rules over a pyfakefs tree (see the module docstring)."""

    def __init__(self, fs: FakeFilesystem, root: Path) -> None:
        self.fs = fs
        # Paths made before pyfakefs patched pathlib never equal patched ones: compare text.
        self.root = str(root)
        self.default_groups: set[str] = set()
        self.refuse: dict[str, int] = {}
        self._makedir = fs.makedir
        self._rmdir = fs.rmdir

    def makedir(self, dir_path: str | os.PathLike[str], mode: int = 0o777) -> None:
        path = Path(os.fspath(dir_path))
        if str(path) in self.refuse:
            code = self.refuse[str(path)]
            raise OSError(code, os.strerror(code), str(path))
        self._makedir(dir_path, mode)
        files, groups = self._defaults(path)
        for name in files:
            self.fs.create_file(path / name, contents="\n" if name == "UDC" else "")
        for name in groups:
            self._makedir(str(path / name))
            self.default_groups.add(str(path / name))

    def rmdir(self, target_directory: str, allow_symlink: bool = False) -> None:
        path = Path(os.fspath(target_directory))
        if str(path) in self.default_groups:
            raise OSError(errno.EPERM, os.strerror(errno.EPERM), str(path))
        if self._bound(path):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
        children = list(path.iterdir()) if path.is_dir() and not path.is_symlink() else []
        if any(not self._kernel_made(child) for child in children):
            raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), str(path))
        for child in children:
            if str(child) in self.default_groups:
                self._rmdir(str(child))
                self.default_groups.discard(str(child))
            else:
                child.unlink()
        self._rmdir(target_directory, allow_symlink)

    def _kernel_made(self, child: Path) -> bool:
        if child.is_symlink():
            return False
        default_group = str(child) in self.default_groups
        return child.is_file() or (default_group and not any(child.iterdir()))

    def _bound(self, path: Path) -> bool:
        gadget = next((p for p in (path, *path.parents) if str(p.parent) == self.root), None)
        udc = None if gadget is None else gadget / "UDC"
        return udc is not None and udc.is_file() and udc.read_text().strip() != ""

    def _defaults(self, path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
        parent, grandparent = path.parent, path.parent.parent
        if str(parent) == self.root:
            return _GADGET_FILES, _GADGET_GROUPS
        if parent.name == "strings" and str(grandparent.parent) == self.root:
            return ("manufacturer", "product", "serialnumber"), ()
        if parent.name == "configs" and str(grandparent.parent) == self.root:
            return ("bmAttributes", "MaxPower"), ("strings",)
        if parent.name == "strings" and grandparent.parent.name == "configs":
            return ("configuration",), ()
        return (), ()


F = TypeVar("F", bound=FakeConfigfs)


def install(fs: FakeFilesystem, monkeypatch: pytest.MonkeyPatch, kind: type[F]) -> F:
    """A configfs double of ``kind`` over ``fs``, at ROOT."""
    fs.create_dir(ROOT)
    fake = kind(fs, ROOT)
    monkeypatch.setattr(fs, "makedir", fake.makedir)
    monkeypatch.setattr(fs, "rmdir", fake.rmdir)
    return fake


@pytest.fixture
def configfs(fs: FakeFilesystem, monkeypatch: pytest.MonkeyPatch) -> FakeConfigfs:
    return install(fs, monkeypatch, FakeConfigfs)


def _config(value: int, i_configuration: int, bm_attributes: int, b_max_power: int) -> bytes:
    raw = bytearray(MASS_STORAGE_CONFIG)
    raw[5:9] = bytes([value, i_configuration, bm_attributes, b_max_power])
    return bytes(raw)


def _snapshot(speed: Speed = Speed.HIGH) -> DeviceSnapshot:
    return DeviceSnapshot.from_raw(
        "1-1",
        speed,
        MASS_STORAGE_DEVICE,
        (_config(1, 4, 0x80, 50), _config(2, 0, 0x40, 250)),
        lang_ids=(0x409, 0x407),
        strings={
            0x409: {1: "SanDisk", 2: "Cruzer Blade", 3: "4C530001", 4: "Default"},
            0x407: {1: "SanDisk", 2: "USB-Stick", 4: "Standard"},
        },
    )


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_device_attributes(configfs: FakeConfigfs) -> None:
    with ConfigfsGadget(_snapshot(), "g1", root=ROOT):
        found = {name: _read(GADGET / name) for name in _GADGET_FILES[:8]}
    assert found == {
        "bcdUSB": "0x0200",
        "bDeviceClass": "0x00",
        "bDeviceSubClass": "0x00",
        "bDeviceProtocol": "0x00",
        "bMaxPacketSize0": "0x40",
        "idVendor": "0x0781",
        "idProduct": "0x5567",
        "bcdDevice": "0x0100",
    }


def test_strings_in_every_language(configfs: FakeConfigfs) -> None:
    with ConfigfsGadget(_snapshot(), "g1", root=ROOT):
        english, german = GADGET / "strings" / "0x409", GADGET / "strings" / "0x407"
        assert _read(english / "manufacturer") == "SanDisk"
        assert _read(english / "product") == "Cruzer Blade"
        assert _read(english / "serialnumber") == "4C530001"
        assert _read(german / "manufacturer") == "SanDisk"
        assert _read(german / "product") == "USB-Stick"
        assert _read(german / "serialnumber") == ""  # no text in German: left alone


def test_configurations(configfs: FakeConfigfs) -> None:
    with ConfigfsGadget(_snapshot(), "g1", root=ROOT):
        first, second = GADGET / "configs" / "c.1", GADGET / "configs" / "c.2"
        assert _read(first / "bmAttributes") == "0x80"
        assert _read(first / "MaxPower") == "100"
        assert _read(first / "strings" / "0x409" / "configuration") == "Default"
        assert _read(first / "strings" / "0x407" / "configuration") == "Standard"
        assert _read(second / "bmAttributes") == "0xc0"  # D7 forced on, as the kernel wants
        assert _read(second / "MaxPower") == "500"
        assert list((second / "strings").iterdir()) == []


@pytest.mark.parametrize(
    ("speed", "super_speed", "milliamps"),
    [(Speed.SUPER, None, "400"), (Speed.HIGH, True, "400"), (Speed.SUPER, False, "100")],
)
def test_max_power_units(
    configfs: FakeConfigfs, speed: Speed, super_speed: bool | None, milliamps: str
) -> None:
    with ConfigfsGadget(_snapshot(speed), "g1", root=ROOT, super_speed=super_speed):
        assert _read(GADGET / "configs" / "c.1" / "MaxPower") == milliamps


def test_add_function(configfs: FakeConfigfs) -> None:
    with ConfigfsGadget(_snapshot(), "g1", root=ROOT) as gadget:
        function = gadget.add_function("ffs", "usbip", 2)
        assert function == GADGET / "functions" / "ffs.usbip"
        assert function.is_dir()
        link = GADGET / "configs" / "c.2" / "ffs.usbip"
        assert link.is_symlink()
        assert link.resolve() == function
        assert gadget.created[-2:] == (function, link)
    assert list(ROOT.iterdir()) == []


def test_add_function_refuses_bad_arguments(configfs: FakeConfigfs) -> None:
    with ConfigfsGadget(_snapshot(), "g1", root=ROOT) as gadget:
        with pytest.raises(GadgetError, match="no configuration 3") as info:
            gadget.add_function("ffs", "usbip", 3)
        assert info.value.hint == "built configurations: [1, 2]"
        with pytest.raises(GadgetError, match="invalid function name"):
            gadget.add_function("f.fs", "usbip", 1)
        with pytest.raises(GadgetError, match="invalid function name"):
            gadget.add_function("ffs", "", 1)


def test_bind_and_unbind(configfs: FakeConfigfs) -> None:
    with ConfigfsGadget(_snapshot(), "g1", root=ROOT) as gadget:
        gadget.add_function("ffs", "usbip", 1)
        gadget.bind("dummy_udc.0")
        assert _read(GADGET / "UDC") == "dummy_udc.0"
        gadget.unbind()
        assert _read(GADGET / "UDC").strip() == ""
        gadget.unbind()  # not bound: nothing to do
        gadget.bind("dummy_udc.0")
        with pytest.raises(GadgetError, match="invalid UDC name"):
            gadget.bind(" dummy_udc.0\n")
    # Leaving unbinds first: the fake refuses any rmdir in a bound gadget.
    assert list(ROOT.iterdir()) == []


UDC_CLASS = Path("/sys/class/udc")


@pytest.mark.parametrize(
    ("code", "bound_function", "refused"),
    [
        (524, None, True),  # f_fs's ENOTSUPP, before Linux 6.0
        (errno.EOPNOTSUPP, None, True),
        (errno.EBUSY, "", True),  # Linux 6.0 on: any failed bind; the UDC is still free
        (errno.EBUSY, "g_mass_storage", False),  # really busy
        (errno.EBUSY, None, False),  # no function attribute: cannot tell
    ],
)
def test_a_refused_bind_on_a_free_controller_is_named_as_such(
    configfs: FakeConfigfs,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    bound_function: str | None,
    refused: bool,
) -> None:
    configfs.fs.create_dir(UDC_CLASS / "dummy_udc.1")
    if bound_function is not None:
        configfs.fs.create_file(UDC_CLASS / "dummy_udc.1" / "function", contents=bound_function)
    real_write = _configfs._write_attribute

    def write(path: Path, text: str) -> None:
        if path.name == "UDC" and text.strip():
            raise OSError(code, os.strerror(code), str(path))
        real_write(path, text)

    monkeypatch.setattr(_configfs, "_write_attribute", write)
    with ConfigfsGadget(_snapshot(), "g1", root=ROOT, sysfs_class_udc=UDC_CLASS) as gadget:
        gadget.add_function("ffs", "usbip", 1)
        with pytest.raises(GadgetError) as info:
            gadget.bind("dummy_udc.1")
    assert isinstance(info.value, EndpointsExhausted) == refused
    if refused:
        assert str(info.value).startswith("dummy_udc.1 is free but refused the gadget at bind")
    else:
        assert info.value.hint == UDC_BUSY_HINT
    assert list(ROOT.iterdir()) == []


def test_teardown_removes_everything_and_is_idempotent(configfs: FakeConfigfs) -> None:
    gadget = ConfigfsGadget(_snapshot(), "g1", root=ROOT)
    gadget.build()
    gadget.add_function("ffs", "a", 1)
    gadget.add_function("ffs", "b", 2)
    gadget.bind("dummy_udc.0")
    assert gadget.created[0] == GADGET
    gadget.teardown()
    assert not GADGET.exists()
    assert gadget.created == ()
    gadget.teardown()
    assert list(ROOT.iterdir()) == []


def test_failure_while_building_removes_what_was_made(configfs: FakeConfigfs) -> None:
    configfs.refuse[f"{GADGET}/configs/c.2"] = errno.ENOMEM
    with pytest.raises(GadgetError) as info, ConfigfsGadget(_snapshot(), "g1", root=ROOT):
        pytest.fail("building should have failed")
    assert str(info.value) == f"cannot create {GADGET}/configs/c.2: Cannot allocate memory"
    assert list(ROOT.iterdir()) == []


def test_teardown_after_a_failed_build(configfs: FakeConfigfs) -> None:
    configfs.refuse[f"{GADGET}/strings/0x407"] = errno.ENOSPC
    gadget = ConfigfsGadget(_snapshot(), "g1", root=ROOT)
    with pytest.raises(GadgetError, match="strings/0x407"):
        gadget.build()
    assert gadget.created == (GADGET, GADGET / "strings" / "0x409")
    gadget.teardown()
    assert list(ROOT.iterdir()) == []


def test_teardown_carries_on_and_reports_leftovers(configfs: FakeConfigfs) -> None:
    gadget = ConfigfsGadget(_snapshot(), "g1", root=ROOT)
    gadget.build()
    stray = GADGET / "configs" / "c.1" / "strings" / "0x40c"
    os.mkdir(stray)  # made behind the gadget's back: c.1 cannot go
    with pytest.raises(GadgetError) as info:
        gadget.teardown()
    message = str(info.value)
    assert message.startswith(f"could not tear down gadget {GADGET}: ")
    assert f"{GADGET}/configs/c.1 (Directory not empty)" in message
    assert info.value.hint is not None
    assert "by hand" in info.value.hint
    assert not (GADGET / "configs" / "c.2").exists()  # carried on past the failure
    assert gadget.created == (GADGET, GADGET / "configs" / "c.1")
    os.rmdir(stray)
    gadget.teardown()  # retries what was left
    assert list(ROOT.iterdir()) == []


def test_teardown_failure_is_noted_on_the_error_in_flight(configfs: FakeConfigfs) -> None:
    stray = GADGET / "configs" / "c.1" / "strings" / "0x40c"

    def use_and_fail() -> None:
        with ConfigfsGadget(_snapshot(), "g1", root=ROOT):
            os.mkdir(stray)
            raise KeyError("boom")

    with pytest.raises(KeyError) as info:
        use_and_fail()
    assert any("teardown also failed" in note for note in info.value.__notes__)
    os.rmdir(stray)


def test_existing_gadget_is_refused_and_left_alone(configfs: FakeConfigfs) -> None:
    with ConfigfsGadget(_snapshot(), "g1", root=ROOT) as first:
        first.bind("dummy_udc.0")
        with pytest.raises(GadgetError, match="already exists") as info:
            ConfigfsGadget(_snapshot(), "g1", root=ROOT).__enter__()
        assert info.value.hint is not None
        assert "--replace" in info.value.hint
        assert _read(GADGET / "UDC") == "dummy_udc.0"
    assert list(ROOT.iterdir()) == []


def test_replace_removes_a_stale_gadget(configfs: FakeConfigfs) -> None:
    stale = ConfigfsGadget(_snapshot(), "g1", root=ROOT)
    stale.build()
    stale.add_function("ffs", "old", 1)
    stale.add_function("acm", "usb0", 2)
    (GADGET / "os_desc" / "c.1").symlink_to(GADGET / "configs" / "c.1")
    stale.bind("dummy_udc.0")
    snapshot = DeviceSnapshot.from_raw(
        "1-1", Speed.HIGH, MASS_STORAGE_DEVICE, (_config(3, 0, 0x80, 1),)
    )
    with ConfigfsGadget(snapshot, "g1", root=ROOT, replace=True):
        assert sorted(p.name for p in (GADGET / "configs").iterdir()) == ["c.3"]
        assert list((GADGET / "functions").iterdir()) == []
        assert list((GADGET / "strings").iterdir()) == []
        assert list((GADGET / "os_desc").iterdir()) == []
        assert _read(GADGET / "UDC").strip() == ""
    assert list(ROOT.iterdir()) == []


def test_missing_gadget_root_with_configfs_mounted(fs: FakeFilesystem) -> None:
    fs.create_dir("/sys/kernel/config/pci_ep")
    gadget = ConfigfsGadget(_snapshot(), "g1")
    with pytest.raises(GadgetError) as info:
        gadget.build()
    assert str(info.value) == f"cannot create {GADGET}: No such file or directory"
    assert info.value.hint == LIBCOMPOSITE_HINT
    gadget.teardown()  # nothing was made: nothing to do


def test_missing_gadget_root_without_configfs(fs: FakeFilesystem) -> None:
    fs.create_dir("/sys/kernel/config")
    with pytest.raises(GadgetError) as info, ConfigfsGadget(_snapshot(), "g1"):
        pytest.fail("building should have failed")
    assert info.value.hint == CONFIGFS_HINT


@pytest.mark.parametrize(
    ("path", "code", "hint"),
    [
        (GADGET / "UDC", errno.EBUSY, UDC_BUSY_HINT),
        (GADGET, errno.EACCES, PERMISSION_HINT),
        (GADGET / "idVendor", errno.EINVAL, None),
    ],
)
def test_error_hints(fs: FakeFilesystem, path: Path, code: int, hint: str | None) -> None:
    fs.create_dir(ROOT)
    error = configfs_error("write", path, OSError(code, os.strerror(code)), root=ROOT)
    assert str(error) == f"cannot write {path}: {os.strerror(code)}"
    assert error.hint == hint


def test_invalid_gadget_name() -> None:
    with pytest.raises(GadgetError, match="invalid gadget name"):
        ConfigfsGadget(_snapshot(), "a/b")
