"""JSON shapes of a device snapshot: the readable summaries written, and checked readers.

The summaries use the USB spec's field names; the ``raw`` hex next to them is what a snapshot
is rebuilt from. Readers raise ``SnapshotError`` naming where the JSON is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from usbip_gadget._errors import SnapshotError
from usbip_gadget.usb._config import (
    Configuration,
    EndpointDescriptor,
    InterfaceAssociation,
    InterfaceDescriptor,
)
from usbip_gadget.usb._device import DeviceDescriptor
from usbip_gadget.usb._raw import RawDescriptor

Json = dict[str, Any]

_LANG_KEY = re.compile(r"0x[0-9a-fA-F]{4}")
_INDEX_KEY = re.compile(r"[0-9]{1,3}")


def device_json(device: DeviceDescriptor, raw: bytes) -> Json:
    """The device descriptor by spec field names, plus its raw hex."""
    return {
        "bLength": DeviceDescriptor.SIZE,
        "bDescriptorType": 1,
        "bcdUSB": device.bcd_usb,
        "bDeviceClass": device.b_device_class,
        "bDeviceSubClass": device.b_device_sub_class,
        "bDeviceProtocol": device.b_device_protocol,
        "bMaxPacketSize0": device.b_max_packet_size0,
        "idVendor": device.id_vendor,
        "idProduct": device.id_product,
        "bcdDevice": device.bcd_device,
        "iManufacturer": device.i_manufacturer,
        "iProduct": device.i_product,
        "iSerialNumber": device.i_serial_number,
        "bNumConfigurations": device.b_num_configurations,
        "raw": raw.hex(),
    }


def _extra_json(extra: tuple[RawDescriptor, ...]) -> list[Json]:
    return [{"bDescriptorType": raw.b_descriptor_type, "raw": raw.pack().hex()} for raw in extra]


def _endpoint_json(ep: EndpointDescriptor) -> Json:
    obj: Json = {
        "bEndpointAddress": ep.b_endpoint_address,
        "bmAttributes": ep.bm_attributes,
        "wMaxPacketSize": ep.w_max_packet_size,
        "bInterval": ep.b_interval,
    }
    if ep.b_refresh is not None:
        obj.update(bRefresh=ep.b_refresh, bSynchAddress=ep.b_synch_address)
    obj["extra"] = _extra_json(ep.extra)
    return obj


def _interface_json(alt: InterfaceDescriptor) -> Json:
    return {
        "bInterfaceNumber": alt.b_interface_number,
        "bAlternateSetting": alt.b_alternate_setting,
        "bNumEndpoints": alt.b_num_endpoints,
        "bInterfaceClass": alt.b_interface_class,
        "bInterfaceSubClass": alt.b_interface_sub_class,
        "bInterfaceProtocol": alt.b_interface_protocol,
        "iInterface": alt.i_interface,
        "extra": _extra_json(alt.extra),
        "endpoints": [_endpoint_json(ep) for ep in alt.endpoints],
    }


def _association_json(iad: InterfaceAssociation) -> Json:
    return {
        "bFirstInterface": iad.b_first_interface,
        "bInterfaceCount": iad.b_interface_count,
        "bFunctionClass": iad.b_function_class,
        "bFunctionSubClass": iad.b_function_sub_class,
        "bFunctionProtocol": iad.b_function_protocol,
        "iFunction": iad.i_function,
        "extra": _extra_json(iad.extra),
    }


def configuration_json(config: Configuration, raw: bytes) -> Json:
    """A configuration by spec field names, plus its raw hex.

    wTotalLength and bNumInterfaces are the header's, as read (they may disagree with a
    truncated body).
    """
    return {
        "bConfigurationValue": config.b_configuration_value,
        "wTotalLength": int.from_bytes(raw[2:4], "little"),
        "bNumInterfaces": raw[4],
        "iConfiguration": config.i_configuration,
        "bmAttributes": config.bm_attributes,
        "bMaxPower": config.b_max_power,
        "extra": _extra_json(config.extra),
        "associations": [_association_json(iad) for iad in config.associations],
        "interfaces": [_interface_json(alt) for alt in config.alt_settings],
        "raw": raw.hex(),
    }


def strings_json(strings: Mapping[int, Mapping[int, str]]) -> Json:
    """{"0x0409": {"1": "text"}}, sorted."""
    return {
        f"0x{lang:04x}": {str(index): text for index, text in sorted(table.items())}
        for lang, table in sorted(strings.items())
    }


def hid_reports_json(reports: Mapping[tuple[int, int], bytes]) -> list[Json]:
    """The report descriptors as a list sorted by (configuration, interface)."""
    return [
        {"bConfigurationValue": config, "bInterfaceNumber": interface, "raw": raw.hex()}
        for (config, interface), raw in sorted(reports.items())
    ]


# --- readers ---------------------------------------------------------------------------


def expect_dict(value: object, where: str) -> dict[str, object]:
    """``value`` as a JSON object with string keys."""
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise SnapshotError(f"{where}: expected a JSON object")
    return value


def expect_list(value: object, where: str) -> list[object]:
    """``value`` as a JSON array."""
    if not isinstance(value, list):
        raise SnapshotError(f"{where}: expected a JSON array")
    return value


def expect_str(value: object, where: str) -> str:
    """``value`` as a JSON string."""
    if not isinstance(value, str):
        raise SnapshotError(f"{where}: expected a string")
    return value


def expect_int(value: object, where: str, maximum: int) -> int:
    """``value`` as an integer in 0..maximum (booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise SnapshotError(f"{where}: expected an integer in 0..{maximum}")
    return value


def expect_hex(value: object, where: str) -> bytes:
    """``value`` as a hex string, decoded."""
    text = expect_str(value, where)
    if not re.fullmatch(r"(?:[0-9a-fA-F]{2})*", text):
        raise SnapshotError(f"{where}: expected hex bytes")
    return bytes.fromhex(text)


def member(obj: dict[str, object], key: str, where: str) -> object:
    """``obj[key]``, or ``SnapshotError`` naming the missing key."""
    if key not in obj:
        raise SnapshotError(f"{where}: missing {key!r}")
    return obj[key]


def read_strings(value: object) -> dict[int, dict[int, str]]:
    """The "strings" object back to {langid: {index: text}}."""
    strings: dict[int, dict[int, str]] = {}
    for lang_key, table in expect_dict(value, "strings").items():
        if not _LANG_KEY.fullmatch(lang_key):
            raise SnapshotError(f"strings: key {lang_key!r} is not a LANGID like '0x0409'")
        texts: dict[int, str] = {}
        for index_key, text in expect_dict(table, f"strings[{lang_key}]").items():
            if not _INDEX_KEY.fullmatch(index_key) or not 1 <= int(index_key) <= 255:
                raise SnapshotError(f"strings[{lang_key}]: key {index_key!r} is not 1..255")
            texts[int(index_key)] = expect_str(text, f"strings[{lang_key}][{index_key}]")
        strings[int(lang_key, 16)] = texts
    return strings


def read_hid_reports(value: object) -> dict[tuple[int, int], bytes]:
    """The "hid_report_descriptors" list back to {(config value, interface): bytes}."""
    reports: dict[tuple[int, int], bytes] = {}
    for position, item in enumerate(expect_list(value, "hid_report_descriptors")):
        where = f"hid_report_descriptors[{position}]"
        obj = expect_dict(item, where)
        config = expect_int(member(obj, "bConfigurationValue", where), where, 0xFF)
        interface = expect_int(member(obj, "bInterfaceNumber", where), where, 0xFF)
        if (config, interface) in reports:
            raise SnapshotError(f"{where}: duplicate configuration {config} interface {interface}")
        reports[config, interface] = expect_hex(member(obj, "raw", where), where)
    return reports


def check_agrees(given: dict[str, object], expected: Json, where: str) -> None:
    """Raise ``SnapshotError`` if the summary fields in ``given`` differ from ``expected``."""
    keys = (set(given) | set(expected)) - {"raw"}
    wrong = sorted(key for key in keys if given.get(key) != expected.get(key))
    if wrong:
        raise SnapshotError(f"{where}: {', '.join(wrong)} disagree with the raw bytes")
