"""The descriptor and string blobs written to FunctionFS ep0 (uapi/linux/usb/functionfs.h).

Pure functions: a remote ``Configuration`` in, bytes out. The rules follow
drivers/usb/gadget/function/f_fs.c:

- ``ffs_do_single_desc`` accepts only interface (9 bytes), endpoint (7 or 9), IAD (8),
  SuperSpeed endpoint companion (6) and OTG descriptors, plus type 0x21 when the last
  interface seen is HID (9-byte HID descriptor) or CCID (54 bytes); anything else is EINVAL.
- ``__ffs_data_do_entity`` counts interfaces as "highest bInterfaceNumber + 1", so the blob
  numbers interfaces 0..n-1; string indexes are 1-based into the strings blob; every speed set
  must list the same endpoint addresses in the same order, and fewer than
  ``FFS_MAX_EPS_COUNT`` (31; 15 on old kernels) of them.
- ``__ffs_func_bind_do_descs`` gives each endpoint address one descriptor per speed (a second
  one is EINVAL) and lets ``usb_ep_autoconfig`` pick the hardware endpoint; only with
  ``FUNCTIONFS_VIRTUAL_ADDR`` is the blob's address restored in what the host sees.
- ``__ffs_func_bind_do_nums`` rewrites bInterfaceNumber, iInterface and iFunction (but not an
  IAD's bFirstInterface) to the numbers the composite layer allocates.

Endpoint addresses: the blob keeps the remote's addresses. They are valid blob addresses
(non-zero numbers, one per endpoint), they are what ``FUNCTIONFS_VIRTUAL_ADDR`` preserves, and
without that flag the kernel replaces them anyway, so nothing is lost by keeping them.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator, Mapping, Sequence
from enum import IntFlag

from usbip_gadget._errors import FunctionFsUnsupported, GadgetError
from usbip_gadget.gadget._remap import interface_numbers, string_indexes
from usbip_gadget.usb import (
    LANG_ID_US_ENGLISH,
    ClassCode,
    Configuration,
    DescriptorType,
    EndpointDescriptor,
    InterfaceAssociation,
    InterfaceDescriptor,
    RawDescriptor,
    Speed,
    TransferType,
    as_full_speed,
    as_high_speed,
    class_name,
)

DESCRIPTORS_MAGIC_V2 = 3
STRINGS_MAGIC = 2
MAX_ENDPOINTS = 30  # __ffs_data_do_entity: eps_count >= FFS_MAX_EPS_COUNT (31) is EINVAL

_CLASS_DESCRIPTOR_SIZES: dict[int, int] = {ClassCode.HID: 9, ClassCode.SMART_CARD: 54}
_SS_COMPANION = struct.Struct("<BBBBH")
_LE32 = struct.Struct("<I")


class FfsFlag(IntFlag):
    """``enum functionfs_flags`` (include/uapi/linux/usb/functionfs.h)."""

    HAS_FS_DESC = 1
    HAS_HS_DESC = 2
    HAS_SS_DESC = 4
    HAS_MS_OS_DESC = 8
    VIRTUAL_ADDR = 16
    EVENTFD = 32
    ALL_CTRL_RECIP = 64
    CONFIG0_SETUP = 128


# Flags a caller may pass: the others change the blob layout, which we build ourselves.
CALLER_FLAGS = FfsFlag.VIRTUAL_ADDR | FfsFlag.ALL_CTRL_RECIP | FfsFlag.CONFIG0_SETUP


# -- what FunctionFS accepts -------------------------------------------------------------


def check_expressible(config: Configuration) -> tuple[str, ...]:
    """One line per thing FunctionFS cannot express; empty when the configuration fits."""
    reasons = [*_alt_setting_reasons(config), *_iad_reasons(config)]
    for alt in config.alt_settings:
        reasons += _extra_reasons(alt)
    reasons += _endpoint_reasons(config)
    return tuple(dict.fromkeys(reasons))


def _alt_setting_reasons(config: Configuration) -> Iterator[str]:
    for number, alts in config.interfaces().items():
        if len(alts) > 1:
            values = " and ".join(str(alt.b_alternate_setting) for alt in alts)
            yield (
                f"interface {number} has alternate settings {values} — FunctionFS on this "
                "kernel cannot switch alternate settings"
            )


def _iad_reasons(config: Configuration) -> Iterator[str]:
    numbers = config.interfaces()
    for iad in config.associations:
        if iad.b_first_interface not in numbers:
            yield f"IAD names interface {iad.b_first_interface}, which does not exist"
        for raw in iad.extra:
            yield f"IAD: descriptor 0x{raw.b_descriptor_type:02x} after it — {_ONLY}"


_ONLY = "FunctionFS accepts only HID/CCID class descriptors"


def _extra_reasons(alt: InterfaceDescriptor) -> Iterator[str]:
    where = f"interface {alt.b_interface_number}"
    for raw in alt.extra:
        yield from _class_descriptor_reason(alt, raw, where)
    for ep in alt.endpoints:
        for raw in ep.extra:
            if raw.b_descriptor_type != DescriptorType.SS_ENDPOINT_COMPANION:
                yield from _class_descriptor_reason(alt, raw, where)


def _class_descriptor_reason(
    alt: InterfaceDescriptor, raw: RawDescriptor, where: str
) -> Iterator[str]:
    dtype = raw.b_descriptor_type
    size = _CLASS_DESCRIPTOR_SIZES.get(alt.b_interface_class)
    if dtype == DescriptorType.HID and size is not None:
        if raw.b_length != size:
            yield (
                f"{where}: class descriptor 0x21 of {raw.b_length} bytes — FunctionFS "
                f"accepts only the {size}-byte form"
            )
        return
    kind = class_name(alt.b_interface_class) or f"class 0x{alt.b_interface_class:02x}"
    yield f"{where}: class-specific descriptor 0x{dtype:02x} ({kind}) — {_ONLY}"


def _endpoint_reasons(config: Configuration) -> Iterator[str]:
    addresses = [ep.b_endpoint_address for ep in config.endpoints()]
    if len(addresses) > MAX_ENDPOINTS:
        yield f"{len(addresses)} endpoints — FunctionFS takes at most {MAX_ENDPOINTS}"
    for address in sorted({a for a in addresses if addresses.count(a) > 1}):
        yield (
            f"endpoint 0x{address:02x} is described more than once — FunctionFS takes one "
            "descriptor per endpoint and speed"
        )


def _companion(ep: EndpointDescriptor) -> bytes:
    """The remote's SuperSpeed endpoint companion, or a default one (USB 3.2 §9.6.7)."""
    for raw in ep.extra:
        if raw.b_descriptor_type == DescriptorType.SS_ENDPOINT_COMPANION:
            return raw.pack()
    periodic = ep.transfer_type in (TransferType.INTERRUPT, TransferType.ISOCHRONOUS)
    per_interval = ep.max_packet_size if periodic else 0
    return _SS_COMPANION.pack(6, DescriptorType.SS_ENDPOINT_COMPANION, 0, 0, per_interval)


# -- descriptor sets -----------------------------------------------------------------------


def _endpoint_set(ep: EndpointDescriptor, *, super_speed: bool) -> list[bytes]:
    own = [dataclasses.replace(ep, extra=()).pack()]
    if super_speed:
        own.append(_companion(ep))
    kept = (r for r in ep.extra if r.b_descriptor_type != DescriptorType.SS_ENDPOINT_COMPANION)
    return own + [raw.pack() for raw in kept]


def _descriptor_set(
    config: Configuration, strings: Mapping[int, int], endpoint: _EndpointMap, *, ss: bool
) -> list[bytes]:
    numbers = interface_numbers(config)
    out: list[bytes] = []
    for item in config.body:
        if isinstance(item, InterfaceAssociation):
            out.append(_association(item, numbers, strings))
            continue
        local = dataclasses.replace(
            item,
            b_interface_number=numbers[item.b_interface_number],
            i_interface=strings.get(item.i_interface, 0),
            extra=(),
        )
        out.append(local.pack()[:9])  # the interface descriptor alone, bNumEndpoints kept
        out += [raw.pack() for raw in item.extra]
        for ep in item.endpoints:
            out += _endpoint_set(endpoint(ep), super_speed=ss)
    return out


def _association(
    iad: InterfaceAssociation, numbers: Mapping[int, int], strings: Mapping[int, int]
) -> bytes:
    return dataclasses.replace(
        iad,
        b_first_interface=numbers.get(iad.b_first_interface, iad.b_first_interface),
        i_function=strings.get(iad.i_function, 0),
        extra=(),
    ).pack()


class _EndpointMap:
    """Turns a remote endpoint into the endpoint of one speed set."""

    def __init__(self, speed: Speed, target: Speed) -> None:
        self.speed = speed
        self.target = target

    def __call__(self, ep: EndpointDescriptor) -> EndpointDescriptor:
        if self.target == self.speed or self.target >= Speed.SUPER:
            return ep
        if self.target == Speed.FULL and self.speed in (Speed.LOW, Speed.FULL):
            return ep
        high = as_high_speed(ep, self.speed)
        return high if self.target == Speed.HIGH else as_full_speed(high)


def _remote_speed(speed: Speed) -> Speed:
    """Speeds that carry no descriptor rules of their own are treated as high speed."""
    if speed in (Speed.UNKNOWN, Speed.WIRELESS):
        return Speed.HIGH
    return Speed.SUPER if speed == Speed.SUPER_PLUS else speed


def build_descriptors(
    config: Configuration,
    *,
    speed: Speed,
    flags: int = 0,
    strings: Mapping[int, int] | None = None,
) -> bytes:
    """The FUNCTIONFS_DESCRIPTORS_MAGIC_V2 blob for ``config`` of a remote at ``speed``.

    Full- and high-speed sets always, a SuperSpeed set when the remote is SuperSpeed.
    ``flags`` may hold ``CALLER_FLAGS``; the HAS_*_DESC bits are added here. ``strings`` maps
    remote string index → FunctionFS index (see ``build_strings``); by default the order of
    ``string_indexes(config)``. ``FunctionFsUnsupported`` if FunctionFS cannot express ``config``.
    """
    if flags & ~CALLER_FLAGS:
        raise GadgetError(f"FunctionFS flags 0x{flags & ~CALLER_FLAGS:x} are not supported here")
    reasons = check_expressible(config)
    if reasons:
        raise FunctionFsUnsupported(reasons)
    if strings is None:
        strings = {index: n for n, index in enumerate(string_indexes(config), start=1)}
    remote = _remote_speed(speed)
    targets = [Speed.FULL, Speed.HIGH] + ([Speed.SUPER] if remote == Speed.SUPER else [])
    sets = [
        _descriptor_set(config, strings, _EndpointMap(remote, t), ss=t == Speed.SUPER)
        for t in targets
    ]
    return _blob(flags, sets)


def _blob(flags: int, sets: list[list[bytes]]) -> bytes:
    has = FfsFlag.HAS_FS_DESC | FfsFlag.HAS_HS_DESC
    if len(sets) == 3:
        has |= FfsFlag.HAS_SS_DESC
    counts = b"".join(_LE32.pack(len(one)) for one in sets)
    body = counts + b"".join(b"".join(one) for one in sets)
    head = struct.pack("<III", DESCRIPTORS_MAGIC_V2, 12 + len(body), flags | has)
    return head + body


# -- strings -------------------------------------------------------------------------------


def build_strings(
    snapshot_strings: Mapping[int, Mapping[int, str]], indexes: Sequence[int]
) -> tuple[bytes, dict[int, int]]:
    """The FUNCTIONFS_STRINGS_MAGIC blob and the map remote index → FunctionFS index.

    ``snapshot_strings`` maps LANGID → remote index → text; ``indexes`` are the remote
    indexes to carry (0 and repeats are skipped). A language lacking a string gets an empty
    one so every language has the same count; with no language at all, US English strings
    are empty. No indexes gives the empty blob (zero strings, zero languages).
    """
    wanted = tuple(dict.fromkeys(index for index in indexes if index))
    mapping = {index: n for n, index in enumerate(wanted, start=1)}
    languages = dict(snapshot_strings) if wanted else {}
    if wanted and not languages:
        languages = {LANG_ID_US_ENGLISH: {}}
    tables = b"".join(_string_table(lang, texts, wanted) for lang, texts in languages.items())
    head = struct.pack("<IIII", STRINGS_MAGIC, 16 + len(tables), len(wanted), len(languages))
    return head + tables, mapping


def _string_table(lang: int, texts: Mapping[int, str], wanted: Sequence[int]) -> bytes:
    out = bytearray(struct.pack("<H", lang))
    for index in wanted:
        text = texts.get(index, "")
        if "\0" in text:
            raise GadgetError(f"string {index} (LANGID 0x{lang:04x}) contains a NUL character")
        out += text.encode("utf-8") + b"\0"
    return bytes(out)
