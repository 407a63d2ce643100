"""Which string descriptor indexes class-specific descriptors refer to.

Standard descriptors name their strings in fixed fields (iManufacturer, iConfiguration,
iInterface, iFunction...). Class-specific descriptors do too, at class-defined places; the
table below knows these, keyed by (bInterfaceClass, bInterfaceSubClass, bInterfaceProtocol
or None for any, bDescriptorSubtype) of CS_INTERFACE descriptors following an interface:

- CDC 1.2 ECM §5.4 / NCM §5.2.1: Ethernet Networking functional descriptor, iMACAddress;
- UAC 1.0 §4.3.2: input/output terminals, mixer, selector, feature, processing and
  extension units;
- UAC 2.0 §4.7.2: terminals, mixer, selector, feature units and clock entities;
- UVC 1.1/1.5 §3.7.2: input/output terminals, selector, processing and extension units.

Class-specific descriptors not in the table (and every CS_ENDPOINT descriptor) are not
scanned: a device whose other class descriptors name strings will miss those strings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from usbip_gadget.usb._enums import ClassCode, DescriptorType
from usbip_gadget.usb._raw import RawDescriptor

# Offsets (into the whole descriptor) of the bytes that hold string indexes.
_Offsets = Callable[[bytes], tuple[int, ...]]


def _at(data: bytes, offset: int) -> int:
    return data[offset] if 0 <= offset < len(data) else 0


def _fixed(*offsets: int) -> _Offsets:
    return lambda data: offsets


def _last(data: bytes) -> tuple[int, ...]:
    return (len(data) - 1,)


def _uac1_mixer(data: bytes) -> tuple[int, ...]:
    # bNrInPins (p) at 4; iChannelNames at 8 + p; iMixer is the last byte.
    return (8 + _at(data, 4), len(data) - 1)


def _uac1_processing(data: bytes) -> tuple[int, ...]:
    # Processing and extension units: bNrInPins (p) at 6, iChannelNames at 10 + p,
    # bControlSize (n) at 11 + p, then iProcessing / iExtension at 12 + p + n.
    pins = _at(data, 6)
    return (10 + pins, 12 + pins + _at(data, 11 + pins))


def _uac2_mixer(data: bytes) -> tuple[int, ...]:
    # bNrInPins (p) at 4; iChannelNames at 10 + p; iMixer is the last byte.
    return (10 + _at(data, 4), len(data) - 1)


def _uvc_processing(data: bytes) -> tuple[int, ...]:
    # bControlSize (n) at 7; iProcessing at 8 + n.
    return (8 + _at(data, 7),)


_AUDIO, _CDC, _VIDEO = ClassCode.AUDIO, ClassCode.CDC, ClassCode.VIDEO

_TABLE: dict[tuple[int, int, int | None, int], _Offsets] = {
    (_CDC, 0x06, None, 0x0F): _fixed(3),  # ECM Ethernet Networking: iMACAddress
    (_CDC, 0x0D, None, 0x0F): _fixed(3),  # NCM uses the same descriptor
    (_AUDIO, 0x01, 0x00, 0x02): _fixed(10, 11),  # input terminal: iChannelNames, iTerminal
    (_AUDIO, 0x01, 0x00, 0x03): _fixed(8),  # output terminal: iTerminal
    (_AUDIO, 0x01, 0x00, 0x04): _uac1_mixer,
    (_AUDIO, 0x01, 0x00, 0x05): _last,  # selector unit: iSelector
    (_AUDIO, 0x01, 0x00, 0x06): _last,  # feature unit: iFeature
    (_AUDIO, 0x01, 0x00, 0x07): _uac1_processing,
    (_AUDIO, 0x01, 0x00, 0x08): _uac1_processing,  # extension unit: same layout
    (_AUDIO, 0x01, 0x20, 0x02): _fixed(13, 16),  # input terminal: iChannelNames, iTerminal
    (_AUDIO, 0x01, 0x20, 0x03): _fixed(11),  # output terminal: iTerminal
    (_AUDIO, 0x01, 0x20, 0x04): _uac2_mixer,
    (_AUDIO, 0x01, 0x20, 0x05): _last,  # selector unit: iSelector
    (_AUDIO, 0x01, 0x20, 0x06): _last,  # feature unit: iFeature
    (_AUDIO, 0x01, 0x20, 0x0A): _fixed(7),  # clock source: iClockSource
    (_AUDIO, 0x01, 0x20, 0x0B): _last,  # clock selector: iClockSelector
    (_AUDIO, 0x01, 0x20, 0x0C): _last,  # clock multiplier: iClockMultiplier
    (_VIDEO, 0x01, None, 0x02): _fixed(7),  # input terminal: iTerminal
    (_VIDEO, 0x01, None, 0x03): _fixed(8),  # output terminal: iTerminal
    (_VIDEO, 0x01, None, 0x04): _last,  # selector unit: iSelector
    (_VIDEO, 0x01, None, 0x05): _uvc_processing,
    (_VIDEO, 0x01, None, 0x06): _last,  # extension unit: iExtension
}


def _offsets_for(function: tuple[int, int, int], subtype: int) -> _Offsets | None:
    klass, sub, proto = function
    return _TABLE.get((klass, sub, proto, subtype)) or _TABLE.get((klass, sub, None, subtype))


def class_specific_string_indexes(
    function: tuple[int, int, int], extra: Iterable[RawDescriptor]
) -> set[int]:
    """String indexes named by the known class-specific descriptors following an interface.

    ``function`` is the interface's (bInterfaceClass, bInterfaceSubClass, bInterfaceProtocol);
    ``extra`` the descriptors between it and its first endpoint.
    """
    found: set[int] = set()
    for raw in extra:
        if raw.b_descriptor_type != DescriptorType.CS_INTERFACE or raw.subtype is None:
            continue
        offsets = _offsets_for(function, raw.subtype)
        if offsets is None:
            continue
        data = raw.pack()
        # Offsets 0..2 are the header; a too-short descriptor must not be read as indexes.
        found.update(data[offset] for offset in offsets(data) if 3 <= offset < len(data))
    return found - {0}
