"""The device policy on its own: which enumerated devices ``attach`` and ``listen`` plug."""

from __future__ import annotations

import pytest

from tests.usb.vectors import (
    KEYBOARD_CONFIG,
    KEYBOARD_DEVICE,
    MASS_STORAGE_CONFIG,
    MASS_STORAGE_DEVICE,
)
from usbip_gadget import DeviceRefused, UsbipGadgetError
from usbip_gadget.bridge import ClassRule, DeviceGate, DevicePolicy, parse_class_rule
from usbip_gadget.usb import DeviceSnapshot, Speed

SCANNER_DEVICE = bytes.fromhex("12 01 00 02 00 00 00 40 a9 04 09 19 00 01 01 02 00 01")
# A printer-class "scanner" whose second interface is a boot keyboard.
SCANNER_WITH_KEYBOARD = bytes.fromhex(
    "090239000201008032"
    "090400000207010200"  # interface 0: printer 07:01:02
    "07058102400000"
    "07050202400000"
    "090401000103010100"  # interface 1: HID boot keyboard 03:01:01
    "092111010001223f00"
    "0705830308000a"
)
# The keyboard hidden in an alternate setting of a vendor interface.
VENDOR_WITH_HID_ALTERNATE = bytes.fromhex(
    "09022d000101008032"
    "0904000001ff000000"  # interface 0, alternate setting 0: vendor
    "07058102400000"
    "090400010103010100"  # interface 0, alternate setting 1: HID boot keyboard
    "092111010001223f00"
    "0705810308000a"
)


def keyboard(product: str = "Keyboard") -> DeviceSnapshot:
    """ffff:0001, a boot keyboard (interface 0 is 03:01:01); iProduct is 14."""
    return DeviceSnapshot.from_raw(
        "1-2", Speed.FULL, KEYBOARD_DEVICE, (KEYBOARD_CONFIG,),
        lang_ids=(0x0409,), strings={0x0409: {14: product}},
    )  # fmt: skip


def disk(serial: str = "0001") -> DeviceSnapshot:
    """0781:5567, a flash drive (interface 0 is 08:06:50)."""
    return DeviceSnapshot.from_raw(
        "1-1", Speed.HIGH, MASS_STORAGE_DEVICE, (MASS_STORAGE_CONFIG,),
        lang_ids=(0x0409,), strings={0x0409: {2: "Disk", 3: serial}},
    )  # fmt: skip


def scanner(config: bytes = SCANNER_WITH_KEYBOARD) -> DeviceSnapshot:
    return DeviceSnapshot.from_raw("3-1", Speed.HIGH, SCANNER_DEVICE, (config,))


def rules(*classes: str, ids: tuple[tuple[int, int], ...] = ()) -> DevicePolicy:
    return DevicePolicy.of(ids, [parse_class_rule(text) for text in classes])


# -- the rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("03", ClassRule(0x03)),
        ("7:1", ClassRule(0x07, 0x01)),
        ("ff:00:Fe", ClassRule(0xFF, 0x00, 0xFE)),
    ],
)
def test_class_rules_are_hex_bytes(text: str, rule: ClassRule) -> None:
    assert parse_class_rule(text) == rule


@pytest.mark.parametrize("text", ["", "0x03", "103", "03:", "03:01:01:00", "hid", "03::01"])
def test_a_malformed_class_rule_is_refused(text: str) -> None:
    with pytest.raises(UsbipGadgetError, match=r"is not CLASS\[:SUB\[:PROTO\]\]"):
        parse_class_rule(text)


def test_hid_is_refused_without_rules() -> None:
    verdict = DevicePolicy().verdict(keyboard())
    assert not verdict.allowed
    assert verdict.reason == (
        "interface 0 is HID (03:01:01); only --allow ffff:0001 or --allow-class 03 plugs it"
    )


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (rules("03"), "--allow-class 03"),
        (rules("03:01:01"), "--allow-class 03:01:01"),
        (rules(ids=((0xFFFF, 0x0001),)), "--allow ffff:0001"),
        (rules("08", ids=((0xFFFF, 0x0001),)), "--allow ffff:0001"),
    ],
)
def test_a_rule_naming_hid_or_the_device_plugs_a_keyboard(
    policy: DevicePolicy, reason: str
) -> None:
    verdict = policy.verdict(keyboard())
    assert verdict.allowed
    assert verdict.reason == reason


@pytest.mark.parametrize("policy", [rules("03:00"), rules("03:01:02"), rules("08", "ff")])
def test_a_class_rule_must_match_the_hid_interface_itself(policy: DevicePolicy) -> None:
    verdict = policy.verdict(keyboard())
    assert not verdict.allowed
    assert verdict.reason == (
        "interface 0 is HID (03:01:01) and no rule admits it: --allow ffff:0001 or"
        " --allow-class 03 would"
    )


def test_a_keyboard_behind_a_scanner_interface_is_refused() -> None:
    verdict = rules("07").verdict(scanner())
    assert not verdict.allowed
    assert verdict.reason.startswith("interface 1 is HID (03:01:01) and no rule admits it")
    assert not DevicePolicy().verdict(scanner()).allowed
    assert rules("07", "03").verdict(scanner()).reason == "--allow-class 07, --allow-class 03"
    assert rules(ids=((0x04A9, 0x1909),)).verdict(scanner()).allowed


def test_every_alternate_setting_counts() -> None:
    hidden = scanner(VENDOR_WITH_HID_ALTERNATE)
    assert (
        DevicePolicy()
        .verdict(hidden)
        .reason.startswith("interface 0 (alternate setting 1) is HID (03:01:01)")
    )
    assert not rules("ff").verdict(hidden).allowed
    assert rules("ff", "03").verdict(hidden).allowed


def test_with_rules_a_device_must_match_one() -> None:
    assert rules("08:06").verdict(disk()).allowed
    verdict = rules("03", ids=((0x04A9, 0x1909),)).verdict(disk())
    assert not verdict.allowed
    assert verdict.reason == (
        "interface 0 (08:06:50) matches no --allow-class rule, and no --allow names 0781:5567"
    )


def test_without_rules_every_device_without_hid_is_plugged() -> None:
    verdict = DevicePolicy().verdict(disk())
    assert verdict.allowed
    assert verdict.reason == "no --allow rule given, and no HID interface"
    assert verdict.line() == "policy: plugs it: no --allow rule given, and no HID interface"


# -- the gate: one run -------------------------------------------------------------------


def test_a_refusal_is_one_line_naming_the_device_and_the_rule() -> None:
    with pytest.raises(DeviceRefused) as info:
        DeviceGate().admit(keyboard(), "1-2 on 192.0.2.7")
    assert info.value.one_line() == (
        "refused ffff:0001 'Keyboard' (1-2 on 192.0.2.7): interface 0 is HID (03:01:01);"
        " only --allow ffff:0001 or --allow-class 03 plugs it"
    )


def test_a_product_string_cannot_break_the_line() -> None:
    with pytest.raises(DeviceRefused) as info:
        DeviceGate().admit(keyboard("Disk\n\x1b[2Jusbip-gadget: plugged"), "1-2 on host")
    line = info.value.one_line()
    assert "\n" not in line
    assert "\x1b" not in line
    assert line.startswith("refused ffff:0001 'Disk\\n\\x1b[2Jusbip-gadget: plugged' (1-2 on")


def test_without_rules_the_pinning_hint_comes_once() -> None:
    gate = DeviceGate()
    hint = "admitted 0781:5567 with no --allow rule; --allow 0781:5567 pins this device"
    assert gate.admit(disk(), "1-1 on host") == hint
    assert gate.admit(disk(), "1-1 on host") is None
    assert DeviceGate(rules("08")).admit(disk(), "1-1 on host") is None


def test_a_pinned_gate_refuses_a_swapped_device() -> None:
    gate = DeviceGate(rules("08", "07", "03"), pin=True)
    gate.admit(disk(), "1-1 on host")
    gate.admit(disk(serial="0002"), "1-1 on host")  # strings aside
    with pytest.raises(DeviceRefused) as info:
        gate.admit(scanner(), "1-1 on host")
    assert info.value.one_line() == (
        "refused 04a9:1909 (1-1 on host): its descriptors differ from those of the device"
        " plugged before in this run (a swapped device is not the one approved)"
    )
    gate.admit(disk(), "1-1 on host")  # the approved device is still welcome
    # One changed byte (here bcdDevice) is a different device too.
    changed = bytearray(MASS_STORAGE_DEVICE)
    changed[12] ^= 1
    other = DeviceSnapshot.from_raw("1-1", Speed.HIGH, bytes(changed), (MASS_STORAGE_CONFIG,))
    with pytest.raises(DeviceRefused):
        gate.admit(other, "1-1 on host")


def test_an_unpinned_gate_takes_each_device_on_its_own() -> None:
    gate = DeviceGate(rules("08", "07", "03"))
    gate.admit(disk(), "1-1 from peer")
    gate.admit(scanner(), "3-1 from peer")
