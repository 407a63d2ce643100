"""DeviceSnapshot: building from raw bytes, the JSON contract, save and load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from tests.usb.strategies import snapshots
from tests.usb.vectors import (
    CDC_ACM_CONFIG,
    KEYBOARD_CONFIG,
    KEYBOARD_DEVICE,
    KEYBOARD_REPORT,
    MASS_STORAGE_CONFIG,
    MASS_STORAGE_DEVICE,
)
from usbip_gadget.usb import (
    DescriptorError,
    DeviceSnapshot,
    SnapshotError,
    Speed,
    referenced_string_indexes,
)

QUALIFIER = bytes.fromhex("0a060002000000400100")
BOS = bytes.fromhex("050f0c0001 07100206000000")


def mass_storage() -> DeviceSnapshot:
    return DeviceSnapshot.from_raw(
        "1-1",
        Speed.HIGH,
        MASS_STORAGE_DEVICE,
        (MASS_STORAGE_CONFIG,),
        lang_ids=(0x0409,),
        strings={0x0409: {1: "SanDisk", 2: "Cruzer Blade", 3: "4C530001230308117054"}},
        device_qualifier_raw=QUALIFIER,
        bos_raw=BOS,
    )


def keyboard() -> DeviceSnapshot:
    return DeviceSnapshot.from_raw(
        "3-2.1",
        Speed.LOW,
        KEYBOARD_DEVICE,
        (KEYBOARD_CONFIG,),
        lang_ids=(0x0409,),
        strings={0x0409: {4: "Example", 14: "Keyboard", 48: "0001"}},
        hid_reports={(1, 0): KEYBOARD_REPORT},
    )


def _round_trip(snapshot: DeviceSnapshot) -> DeviceSnapshot:
    return DeviceSnapshot.from_json(json.loads(json.dumps(snapshot.to_json())))


@given(snapshots())
def test_json_round_trip(snapshot: DeviceSnapshot) -> None:
    assert _round_trip(snapshot) == snapshot


@pytest.mark.parametrize("build", [mass_storage, keyboard])
def test_json_round_trip_real_devices(build: Any) -> None:
    snapshot = build()
    assert _round_trip(snapshot) == snapshot


def test_json_contract() -> None:
    obj = keyboard().to_json()
    assert set(obj) == {
        "busid",
        "speed",
        "device",
        "configurations",
        "lang_ids",
        "strings",
        "bos",
        "device_qualifier",
        "hid_report_descriptors",
    }
    assert obj["speed"] == "low"
    assert obj["device"]["idVendor"] == 0xFFFF
    assert obj["device"]["iSerialNumber"] == 48
    assert obj["device"]["raw"] == KEYBOARD_DEVICE.hex()
    (config,) = obj["configurations"]
    assert (config["wTotalLength"], config["bNumInterfaces"], config["bmAttributes"]) == (
        34,
        1,
        0xA0,
    )
    (alt,) = config["interfaces"]
    assert alt["bInterfaceClass"] == 3
    assert alt["extra"] == [{"bDescriptorType": 0x21, "raw": "092101010001223f00"}]
    assert alt["endpoints"][0]["bEndpointAddress"] == 0x81
    assert config["raw"] == KEYBOARD_CONFIG.hex()
    assert obj["strings"] == {"0x0409": {"4": "Example", "14": "Keyboard", "48": "0001"}}
    assert obj["hid_report_descriptors"] == [
        {"bConfigurationValue": 1, "bInterfaceNumber": 0, "raw": KEYBOARD_REPORT.hex()}
    ]
    assert obj["bos"] is None
    assert obj["device_qualifier"] is None


def test_associations_in_json() -> None:
    snapshot = DeviceSnapshot.from_raw("1-2", Speed.FULL, MASS_STORAGE_DEVICE, (CDC_ACM_CONFIG,))
    (iad,) = snapshot.to_json()["configurations"][0]["associations"]
    assert iad["bFirstInterface"] == 0
    assert iad["bInterfaceCount"] == 2
    assert iad["iFunction"] == 4


def test_truncated_configuration_is_kept_as_read() -> None:
    short = CDC_ACM_CONFIG[:65]
    snapshot = DeviceSnapshot.from_raw("1-2", Speed.FULL, MASS_STORAGE_DEVICE, (short,))
    assert snapshot.configurations_raw == (short,)
    config = snapshot.to_json()["configurations"][0]
    assert (config["wTotalLength"], config["bNumInterfaces"]) == (84, 3)
    assert _round_trip(snapshot) == snapshot


def test_helpers() -> None:
    snapshot = mass_storage()
    assert snapshot.string(2) == "Cruzer Blade"
    assert snapshot.string(0) is None
    assert snapshot.string(9) is None
    assert snapshot.device_qualifier() is not None
    bos = snapshot.bos()
    assert bos is not None
    assert len(bos.capabilities) == 1
    assert referenced_string_indexes(snapshot.device, snapshot.configurations) == [1, 2, 3]


def test_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    snapshot = keyboard()
    snapshot.save(path)
    assert DeviceSnapshot.load(path) == snapshot
    path.write_text("{not json")
    with pytest.raises(SnapshotError, match="not JSON"):
        DeviceSnapshot.load(path)


def test_from_raw_rejects_bad_bytes() -> None:
    with pytest.raises(DescriptorError):
        DeviceSnapshot.from_raw("1-1", Speed.HIGH, MASS_STORAGE_DEVICE[:17], ())
    with pytest.raises(DescriptorError):
        DeviceSnapshot.from_raw("1-1", Speed.HIGH, MASS_STORAGE_DEVICE, (b"\x09\x02",))


def _broken(change: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(json.dumps(keyboard().to_json()))
    exec(change, {"obj": obj})
    return obj


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("del obj['busid']", "missing 'busid'"),
        ("obj['speed'] = 'warp'", "speed: unknown label"),
        ("obj['device']['idVendor'] = 1", "device: idVendor disagree"),
        ("obj['device']['raw'] = 'zz'", "expected hex"),
        ("obj['device']['raw'] = obj['device']['raw'][:-2]", "snapshot raw bytes"),
        ("obj['configurations'][0]['bMaxPower'] = 1", r"configurations\[0\]: bMaxPower"),
        ("obj['configurations'][0]['interfaces'] = []", "interfaces disagree"),
        ("obj['configurations'] = {}", "configurations: expected a JSON array"),
        ("obj['lang_ids'] = [True]", "lang_ids"),
        ("obj['lang_ids'] = [70000]", "lang_ids"),
        ("obj['strings'] = {'0409': {}}", "LANGID"),
        ("obj['strings'] = {'0x0409': {'0': 'x'}}", "1..255"),
        ("obj['strings'] = {'0x0409': {'1': 5}}", "expected a string"),
        ("obj['bos'] = '0500'", "snapshot raw bytes"),
        ("obj['device_qualifier'] = 12", "expected a string"),
        ("obj['hid_report_descriptors'] *= 2", "duplicate"),
        ("obj['hid_report_descriptors'][0]['bInterfaceNumber'] = -1", "0..255"),
    ],
)
def test_from_json_errors(change: str, message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        DeviceSnapshot.from_json(_broken(change))


def test_error_messages_are_one_line() -> None:
    with pytest.raises(SnapshotError) as info:
        DeviceSnapshot.from_json([])
    assert "\n" not in info.value.one_line()
