"""Enumeration as a host does it, as a sequence of control transfers on endpoint 0.

Device descriptor; each configuration's first 9 bytes, then all ``wTotalLength`` bytes;
string language IDs, then every string referenced anywhere; the BOS when bcdUSB ≥ 2.01;
the device qualifier of a high-speed device; each HID interface's report descriptor, after
selecting that interface's configuration as a host does.
Optional descriptors a device refuses (a stall) are recorded as absent. The whole sequence
has one deadline besides each request's timeout: a device answering each of thousands of
string requests just in time cannot hold the caller for days.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import trio

from usbip_gadget._errors import DescriptorError, Stall, UsbipTimeout
from usbip_gadget.client._device import RemoteDevice
from usbip_gadget.usb import (
    Configuration,
    DescriptorType,
    DeviceDescriptor,
    DeviceSnapshot,
    RequestType,
    SetupPacket,
    Speed,
    bos_total_length,
    config_total_length,
    decode_lang_ids,
    decode_string,
    parse_configuration,
    referenced_string_indexes,
)

#: What Linux and Windows ask for when reading a string descriptor.
_STRING_REQUEST_LENGTH = 255
_BOS_MIN_BCD_USB = 0x0201
#: Seconds a whole enumeration may take (a host gives a device far less).
DEFAULT_ENUMERATION_TIMEOUT = 60.0


def _speed(value: int) -> Speed:
    try:
        return Speed(value)
    except ValueError:
        return Speed.UNKNOWN


class _Reader:
    """GET_DESCRIPTOR helpers bound to one device and timeout."""

    def __init__(self, device: RemoteDevice, timeout: float) -> None:
        self._device = device
        self._timeout = timeout

    async def get(
        self, dtype: int, index: int, length: int, *, w_index: int = 0,
        recipient: int = RequestType.DEVICE,
    ) -> bytes:  # fmt: skip
        setup = SetupPacket.get_descriptor(
            dtype, index, length, lang_id=w_index, recipient=recipient
        )
        return await self._device.control(setup, timeout=self._timeout)

    async def send(self, setup: SetupPacket) -> bytes:
        return await self._device.control(setup, timeout=self._timeout)

    async def optional(self, fetch: Callable[[], Awaitable[bytes]]) -> bytes | None:
        """A descriptor the device may refuse with a stall."""
        try:
            return await fetch()
        except Stall:
            return None


async def enumerate_device(
    device: RemoteDevice,
    *,
    timeout: float = 5.0,
    deadline: float = DEFAULT_ENUMERATION_TIMEOUT,
) -> DeviceSnapshot:
    """Read every descriptor of an imported device into a snapshot: ``timeout`` seconds per
    request, ``deadline`` for all (``UsbipTimeout``). ``DescriptorError`` for a device
    without a configuration."""
    with trio.move_on_after(deadline):
        return await _enumerate(device, timeout)
    raise UsbipTimeout(f"enumerating {device.device.busid} took longer than {deadline:g} s")


async def _enumerate(device: RemoteDevice, timeout: float) -> DeviceSnapshot:
    reader = _Reader(device, timeout)
    device_raw = await reader.get(DescriptorType.DEVICE, 0, 18)
    descriptor = DeviceDescriptor.parse(device_raw)
    if not descriptor.b_num_configurations:
        raise DescriptorError(
            f"{device.device.busid} reports no configuration (bNumConfigurations 0)"
        )
    configs_raw = tuple(
        [await _configuration(reader, i) for i in range(descriptor.b_num_configurations)]
    )
    configs = tuple(parse_configuration(raw, lenient=True) for raw in configs_raw)
    lang_ids, strings = await _strings(reader, descriptor, configs)
    speed = _speed(device.device.speed)
    return DeviceSnapshot.from_raw(
        device.device.busid,
        speed,
        device_raw,
        configs_raw,
        lang_ids=lang_ids,
        strings=strings,
        bos_raw=await _bos(reader) if descriptor.bcd_usb >= _BOS_MIN_BCD_USB else None,
        device_qualifier_raw=(
            await reader.optional(partial(reader.get, DescriptorType.DEVICE_QUALIFIER, 0, 10))
            if speed == Speed.HIGH
            else None
        ),
        hid_reports=await _hid_reports(reader, configs),
    )


async def _configuration(reader: _Reader, index: int) -> bytes:
    header = await reader.get(DescriptorType.CONFIGURATION, index, 9)
    total = config_total_length(header)
    return await reader.get(DescriptorType.CONFIGURATION, index, total)


async def _strings(
    reader: _Reader, descriptor: DeviceDescriptor, configs: tuple[Configuration, ...]
) -> tuple[tuple[int, ...], dict[int, dict[int, str]]]:
    indexes = referenced_string_indexes(descriptor, configs)
    if not indexes:
        return (), {}
    langs_raw = await reader.optional(
        partial(reader.get, DescriptorType.STRING, 0, _STRING_REQUEST_LENGTH)
    )
    lang_ids = tuple(decode_lang_ids(langs_raw, lenient=True)) if langs_raw else ()
    strings: dict[int, dict[int, str]] = {}
    for lang in lang_ids:
        table = strings.setdefault(lang, {})
        for index in indexes:
            raw = await reader.optional(
                partial(
                    reader.get, DescriptorType.STRING, index, _STRING_REQUEST_LENGTH, w_index=lang
                )
            )
            if raw is not None:
                table[index] = decode_string(raw, lenient=True)
    return lang_ids, strings


async def _bos(reader: _Reader) -> bytes | None:
    header = await reader.optional(partial(reader.get, DescriptorType.BOS, 0, 5))
    if header is None:
        return None
    return await reader.get(DescriptorType.BOS, 0, bos_total_length(header))


async def _hid_reports(
    reader: _Reader, configs: tuple[Configuration, ...]
) -> dict[tuple[int, int], bytes]:
    reports: dict[tuple[int, int], bytes] = {}
    for config in configs:
        lengths = config.hid_report_lengths()
        if lengths:
            # Interface requests reach a function only in a configuration, as for a host's
            # HID driver, which reads report descriptors after SET_CONFIGURATION.
            setup = SetupPacket.set_configuration(config.b_configuration_value)
            await reader.optional(partial(reader.send, setup))
        for interface, length in lengths:
            raw = await reader.optional(
                partial(
                    reader.get,
                    DescriptorType.HID_REPORT,
                    0,
                    length,
                    w_index=interface,
                    recipient=RequestType.INTERFACE,
                )
            )
            if raw is not None:
                reports[(config.b_configuration_value, interface)] = raw
    return reports
