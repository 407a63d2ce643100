"""Everything enumeration learns about a device, and its JSON form."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from usbip_gadget._errors import DescriptorError, SnapshotError
from usbip_gadget.usb import _snapshot_json as js
from usbip_gadget.usb._bos import Bos, bos_total_length, parse_bos
from usbip_gadget.usb._common import check_u16
from usbip_gadget.usb._config import Configuration
from usbip_gadget.usb._config_parse import parse_configuration
from usbip_gadget.usb._device import DeviceDescriptor, DeviceQualifier
from usbip_gadget.usb._enums import Speed


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """A device as enumerated: descriptors, strings and HID report descriptors.

    The ``*_raw`` fields are the exact bytes read and the source of truth; ``device`` and
    ``configurations`` are their parsed forms (configurations parsed leniently, as a device
    may return less than wTotalLength). ``strings`` maps LANGID → string index → text and
    ``hid_reports`` maps (bConfigurationValue, bInterfaceNumber) → report descriptor.
    """

    busid: str
    speed: Speed
    device: DeviceDescriptor
    device_raw: bytes
    configurations: tuple[Configuration, ...]
    configurations_raw: tuple[bytes, ...]
    lang_ids: tuple[int, ...] = ()
    strings: Mapping[int, Mapping[int, str]] = field(default_factory=dict)
    bos_raw: bytes | None = None
    device_qualifier_raw: bytes | None = None
    hid_reports: Mapping[tuple[int, int], bytes] = field(default_factory=dict)

    @classmethod
    def from_raw(
        cls,
        busid: str,
        speed: Speed,
        device_raw: bytes,
        configurations_raw: tuple[bytes, ...],
        *,
        lang_ids: tuple[int, ...] = (),
        strings: Mapping[int, Mapping[int, str]] | None = None,
        bos_raw: bytes | None = None,
        device_qualifier_raw: bytes | None = None,
        hid_reports: Mapping[tuple[int, int], bytes] | None = None,
    ) -> DeviceSnapshot:
        """Parse the raw descriptors into a snapshot; ``DescriptorError`` if they are malformed.

        The device descriptor and qualifier are parsed strictly, the configurations
        leniently; of the BOS only the header is checked.
        """
        for lang_id in lang_ids:
            check_u16("LANGID", lang_id)
        if bos_raw is not None:
            bos_total_length(bos_raw)
        if device_qualifier_raw is not None:
            DeviceQualifier.parse(device_qualifier_raw)
        return cls(
            busid=busid,
            speed=speed,
            device=DeviceDescriptor.parse(device_raw),
            device_raw=device_raw,
            configurations=tuple(
                parse_configuration(raw, lenient=True) for raw in configurations_raw
            ),
            configurations_raw=configurations_raw,
            lang_ids=lang_ids,
            strings=strings if strings is not None else {},
            bos_raw=bos_raw,
            device_qualifier_raw=device_qualifier_raw,
            hid_reports=hid_reports if hid_reports is not None else {},
        )

    def string(self, index: int) -> str | None:
        """String ``index`` in the first language, if it was read."""
        if index == 0 or not self.lang_ids:
            return None
        return self.strings.get(self.lang_ids[0], {}).get(index)

    def bos(self) -> Bos | None:
        """The BOS, parsed leniently, if the device has one."""
        return None if self.bos_raw is None else parse_bos(self.bos_raw, lenient=True)

    def device_qualifier(self) -> DeviceQualifier | None:
        """The device qualifier, if the device has one."""
        raw = self.device_qualifier_raw
        return None if raw is None else DeviceQualifier.parse(raw)

    def to_json(self) -> js.Json:
        """A JSON-ready dict (see ``DeviceSnapshot.from_json`` for the shape)."""
        pairs = zip(self.configurations, self.configurations_raw, strict=True)
        return {
            "busid": self.busid,
            "speed": self.speed.label,
            "device": js.device_json(self.device, self.device_raw),
            "configurations": [js.configuration_json(config, raw) for config, raw in pairs],
            "lang_ids": list(self.lang_ids),
            "strings": js.strings_json(self.strings),
            "bos": None if self.bos_raw is None else self.bos_raw.hex(),
            "device_qualifier": _hex_or_none(self.device_qualifier_raw),
            "hid_report_descriptors": js.hid_reports_json(self.hid_reports),
        }

    @classmethod
    def from_json(cls, obj: object) -> DeviceSnapshot:
        """Rebuild a snapshot from ``to_json()`` output; ``SnapshotError`` if it is malformed.

        The snapshot is rebuilt from the ``raw`` hex fields; the readable fields beside them
        must agree with those bytes.
        """
        root = js.expect_dict(obj, "snapshot")
        device_obj = js.expect_dict(js.member(root, "device", "snapshot"), "device")
        config_objs = [
            js.expect_dict(item, f"configurations[{position}]")
            for position, item in enumerate(_member_list(root, "configurations"))
        ]
        snapshot = _build(root, device_obj, config_objs)
        js.check_agrees(device_obj, js.device_json(snapshot.device, snapshot.device_raw), "device")
        for position, (config_obj, expected) in enumerate(
            zip(config_objs, snapshot.to_json()["configurations"], strict=True)
        ):
            js.check_agrees(config_obj, expected, f"configurations[{position}]")
        return snapshot

    def save(self, path: str | Path) -> None:
        """Write the JSON form to ``path``."""
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> DeviceSnapshot:
        """Read a snapshot saved by ``save``; ``SnapshotError`` if it is not valid JSON."""
        try:
            obj = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SnapshotError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_json(obj)


def _hex_or_none(raw: bytes | None) -> str | None:
    return None if raw is None else raw.hex()


def _member_list(root: dict[str, object], key: str) -> list[object]:
    return js.expect_list(js.member(root, key, "snapshot"), key)


def _optional_hex(root: dict[str, object], key: str) -> bytes | None:
    value = js.member(root, key, "snapshot")
    return None if value is None else js.expect_hex(value, key)


def _speed(value: object) -> Speed:
    label = js.expect_str(value, "speed")
    try:
        return Speed.from_label(label)
    except ValueError:
        raise SnapshotError(f"speed: unknown label {label!r}") from None


def _build(
    root: dict[str, object], device_obj: dict[str, object], config_objs: list[dict[str, object]]
) -> DeviceSnapshot:
    """The snapshot from the raw fields of the JSON (the readable fields are checked later)."""
    configs_raw = tuple(
        js.expect_hex(js.member(obj, "raw", f"configurations[{n}]"), f"configurations[{n}]")
        for n, obj in enumerate(config_objs)
    )
    lang_ids = tuple(
        js.expect_int(item, "lang_ids", 0xFFFF) for item in _member_list(root, "lang_ids")
    )
    try:
        return DeviceSnapshot.from_raw(
            js.expect_str(js.member(root, "busid", "snapshot"), "busid"),
            _speed(js.member(root, "speed", "snapshot")),
            js.expect_hex(js.member(device_obj, "raw", "device"), "device.raw"),
            configs_raw,
            lang_ids=lang_ids,
            strings=js.read_strings(js.member(root, "strings", "snapshot")),
            bos_raw=_optional_hex(root, "bos"),
            device_qualifier_raw=_optional_hex(root, "device_qualifier"),
            hid_reports=js.read_hid_reports(js.member(root, "hid_report_descriptors", "snapshot")),
        )
    except DescriptorError as exc:
        raise SnapshotError(f"snapshot raw bytes: {exc}") from None
