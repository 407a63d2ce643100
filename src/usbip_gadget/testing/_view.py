"""What a host enumerating a FunctionFS gadget reads: descriptors, strings, numbering.

``host_view`` follows configfs and composite.c: the device descriptor with bMaxPacketSize0 64
and one configuration; string ids allocated in bind order — 1..3 for the device strings (when
the device has any), then iConfiguration, then the function's strings; interfaces renumbered
0..n-1; endpoint addresses kept (``FUNCTIONFS_VIRTUAL_ADDR``). Not modelled: speed
conversions of the descriptors, the device qualifier, BOS and other-speed configuration, the
device string ids configfs allocates for strings it has no text for (those fields read 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from usbip_gadget.gadget import Remap, endpoint_addresses, interface_numbers, string_indexes
from usbip_gadget.usb import LANG_ID_US_ENGLISH, Configuration, DeviceDescriptor, DeviceSnapshot

EP0_MAX_PACKET = 64


@dataclass(frozen=True, slots=True)
class HostView:
    """Descriptors and strings as the host reads them, and ``remap``: remote → host numbers."""

    remap: Remap
    device: bytes
    configuration: bytes
    languages: tuple[int, ...]
    strings: Mapping[int, Mapping[int, str]]  # LANGID → host string id → text


class _StringIds:
    """Allocates host string ids in the order configfs, composite.c and f_fs bind them."""

    def __init__(self, snapshot: DeviceSnapshot) -> None:
        self._texts = snapshot.strings
        extra = sorted(set(snapshot.strings) - set(snapshot.lang_ids))
        # build_strings: with no language at all, the function's strings are empty US English.
        self.languages = (*snapshot.lang_ids, *extra) or (LANG_ID_US_ENGLISH,)
        self.table: dict[int, dict[int, str]] = {lang: {} for lang in self.languages}
        self.next_id = 1

    def has_text(self, remote: int) -> bool:
        """True when some language has text for remote string ``remote``."""
        return remote != 0 and any(self._texts.get(lang, {}).get(remote) for lang in self._texts)

    def device(self, device: DeviceDescriptor) -> dict[str, int]:
        """configfs: ids 1..3 for manufacturer, product and serial number when there is text."""
        fields = ("i_manufacturer", "i_product", "i_serial_number")
        remote = [getattr(device, name) for name in fields]
        if not any(self.has_text(index) for index in remote):
            return dict.fromkeys(fields, 0)
        self.next_id = len(fields) + 1
        return {
            name: self.add(index, local=slot) if self.has_text(index) else 0
            for slot, (name, index) in enumerate(zip(fields, remote, strict=True), start=1)
        }

    def add(self, remote: int, *, local: int | None = None, pad: bool = False) -> int:
        """Give ``remote`` a host id; ``pad`` gives every language a text, as f_fs does."""
        if local is None:
            local, self.next_id = self.next_id, self.next_id + 1
        for lang in self.languages:
            text = self._texts.get(lang, {}).get(remote)
            if text or pad:
                self.table[lang][local] = text or ""
        return local


def host_view(snapshot: DeviceSnapshot, config: Configuration) -> HostView:
    """What a host enumerating the gadget replaying ``config`` of ``snapshot`` reads."""
    ids = _StringIds(snapshot)
    device_ids = ids.device(snapshot.device)
    config_id = ids.add(config.i_configuration) if ids.has_text(config.i_configuration) else 0
    function = {remote: ids.add(remote, pad=True) for remote in string_indexes(config)}
    remap = Remap.from_kernel(
        config,
        interface_numbers=range(len(interface_numbers(config))),
        endpoint_addresses=endpoint_addresses(config),
        strings=function,
    )
    descriptor = bytearray(remap.descriptor_to_local(config.pack()))
    descriptor[6] = config_id  # iConfiguration: configfs's id, whatever the function's are
    device = dataclasses.replace(
        snapshot.device, b_max_packet_size0=EP0_MAX_PACKET, b_num_configurations=1, **device_ids
    )
    languages = tuple(lang for lang, texts in ids.table.items() if texts)
    return HostView(remap, device.pack(), bytes(descriptor), languages, ids.table)


__all__ = ["EP0_MAX_PACKET", "HostView", "host_view"]
