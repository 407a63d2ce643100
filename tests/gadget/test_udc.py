"""Finding and choosing the USB device controller."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from usbip_gadget._errors import GadgetError
from usbip_gadget.gadget._udc import choose_udc, list_udcs

UDC_CLASS = Path("/sys/class/udc")


def test_list_udcs_is_sorted(fs: FakeFilesystem) -> None:
    for name in ("fe980000.usb", "dummy_udc.1", "dummy_udc.0"):
        fs.create_dir(UDC_CLASS / name)
    assert list_udcs() == ["dummy_udc.0", "dummy_udc.1", "fe980000.usb"]
    assert list_udcs(UDC_CLASS) == list_udcs()


def test_list_udcs_without_the_class_directory(fs: FakeFilesystem) -> None:
    assert list_udcs() == []


def test_the_only_udc_is_chosen() -> None:
    assert choose_udc(None, ["fe980000.usb"]) == "fe980000.usb"


def test_the_requested_udc_is_chosen() -> None:
    assert choose_udc("dummy_udc.1", ["dummy_udc.0", "dummy_udc.1"]) == "dummy_udc.1"


@pytest.mark.parametrize("requested", [None, "fe980000.usb"])
def test_no_udc(requested: str | None) -> None:
    with pytest.raises(GadgetError, match=r"^no USB device controller found$") as info:
        choose_udc(requested, [])
    assert info.value.hint is not None
    assert "dtoverlay=dwc2" in info.value.hint


def test_several_udcs_and_none_requested() -> None:
    with pytest.raises(GadgetError) as info:
        choose_udc(None, ["a", "b"])
    assert str(info.value) == "several USB device controllers (a, b): choose one with --udc"


def test_requested_udc_absent() -> None:
    with pytest.raises(GadgetError) as info:
        choose_udc("c", ["a", "b"])
    assert str(info.value) == "no USB device controller named 'c' (found: a, b)"
    assert info.value.hint is not None
    assert "--udc" in info.value.hint
