"""The string attributes a configfs gadget writes (``strings/<LANGID>/<name>``), taken from
a device snapshot's string descriptors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from usbip_gadget.usb import DeviceSnapshot


def device_strings(snapshot: DeviceSnapshot) -> dict[int, dict[str, str]]:
    device = snapshot.device
    indexes = {
        "manufacturer": device.i_manufacturer,
        "product": device.i_product,
        "serialnumber": device.i_serial_number,
    }
    return texts(snapshot, indexes)


def texts(snapshot: DeviceSnapshot, indexes: Mapping[str, int]) -> dict[int, dict[str, str]]:
    """LANGID → attribute → text, for the string indexes that have text in that language."""
    texts: dict[int, dict[str, str]] = {}
    for lang_id in _languages(snapshot):
        table = snapshot.strings.get(lang_id, {})
        found = {name: table[i] for name, i in indexes.items() if i != 0 and table.get(i)}
        if found:
            texts[lang_id] = found
    return texts


def _languages(snapshot: DeviceSnapshot) -> Iterable[int]:
    """The snapshot's LANGIDs in the device's order, then any others it has strings for."""
    extra = sorted(set(snapshot.strings) - set(snapshot.lang_ids))
    return (*snapshot.lang_ids, *extra)
