"""The FunctionFS descriptor and strings blobs, byte by byte, and what they refuse."""

from __future__ import annotations

import struct

import pytest

from tests.usb.vectors import (
    CDC_ACM_CONFIG,
    KEYBOARD_CONFIG,
    MASS_STORAGE_CONFIG,
    MICROPHONE_CONFIG,
)
from usbip_gadget._errors import FunctionFsUnsupported, GadgetError
from usbip_gadget.gadget import endpoint_addresses, interface_numbers, string_indexes
from usbip_gadget.gadget.functionfs import (
    FfsFlag,
    build_descriptors,
    build_strings,
    check_expressible,
)
from usbip_gadget.usb import (
    Configuration,
    EndpointDescriptor,
    InterfaceDescriptor,
    RawDescriptor,
    Speed,
    parse_configuration,
)


def _split(blob: bytes, counts_at: int, sets: int) -> list[list[bytes]]:
    """The descriptor sets of a blob, each as a list of single descriptors."""
    counts = struct.unpack_from(f"<{sets}I", blob, counts_at)
    at = counts_at + 4 * sets
    out: list[list[bytes]] = []
    for count in counts:
        one = []
        for _ in range(count):
            one.append(blob[at : at + blob[at]])
            at += blob[at]
        out.append(one)
    assert at == len(blob)
    return out


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


def test_mass_storage_high_speed() -> None:
    blob = build_descriptors(parse_configuration(MASS_STORAGE_CONFIG), speed=Speed.HIGH)
    magic, length, flags = struct.unpack_from("<III", blob)
    assert (magic, length, flags) == (3, len(blob), 3)
    fs, hs = _split(blob, 12, 2)
    assert hs == [
        _hex("09 04 00 00 02 08 06 50 00"),
        _hex("07 05 81 02 00 02 00"),
        _hex("07 05 02 02 00 02 00"),
    ]
    assert fs == [hs[0], _hex("07 05 81 02 40 00 00"), _hex("07 05 02 02 40 00 00")]


def test_keyboard_full_speed_gets_a_high_speed_set() -> None:
    blob = build_descriptors(parse_configuration(KEYBOARD_CONFIG), speed=Speed.FULL)
    assert struct.unpack_from("<III", blob) == (3, len(blob), 3)
    fs, hs = _split(blob, 12, 2)
    head = [_hex("09 04 00 00 01 03 01 01 00"), _hex("09 21 01 01 00 01 22 3f 00")]
    assert fs == [*head, _hex("07 05 81 03 08 00 0a")]
    # 10 frames = 80 microframes: exponent 7 (64 microframes), the largest not above it.
    assert hs == [*head, _hex("07 05 81 03 08 00 07")]


def test_keyboard_high_speed_derives_full_speed_interval() -> None:
    blob = build_descriptors(parse_configuration(KEYBOARD_CONFIG), speed=Speed.HIGH)
    fs, hs = _split(blob, 12, 2)
    assert hs[2] == _hex("07 05 81 03 08 00 0a")
    assert fs[2] == _hex("07 05 81 03 08 00 40")  # 2^9 microframes = 64 frames


def test_flags_are_passed_and_layout_flags_refused() -> None:
    config = parse_configuration(MASS_STORAGE_CONFIG)
    blob = build_descriptors(config, speed=Speed.HIGH, flags=FfsFlag.VIRTUAL_ADDR)
    assert struct.unpack_from("<I", blob, 8)[0] == FfsFlag.VIRTUAL_ADDR | 3
    with pytest.raises(GadgetError):
        build_descriptors(config, speed=Speed.HIGH, flags=FfsFlag.EVENTFD)


def _bulk_pair(extra: tuple[RawDescriptor, ...] = ()) -> Configuration:
    endpoints = (
        EndpointDescriptor(0x81, 0x02, 1024, 0, extra=extra),
        EndpointDescriptor(0x02, 0x02, 1024, 0),
    )
    alt = InterfaceDescriptor(3, 0, 0xFF, 0, 0, i_interface=7, endpoints=endpoints)
    return Configuration(1, body=(alt,))


def test_super_speed_set_has_companions() -> None:
    remote_companion = RawDescriptor(0x30, bytes((15, 0, 0, 0)))
    blob = build_descriptors(_bulk_pair((remote_companion,)), speed=Speed.SUPER)
    assert struct.unpack_from("<I", blob, 8)[0] == 7
    fs, hs, ss = _split(blob, 12, 3)
    # Interface 3 becomes 0; string 7 becomes 1.
    assert ss[0] == _hex("09 04 00 00 02 ff 00 00 01")
    assert ss[1:] == [
        _hex("07 05 81 02 00 04 00"),
        _hex("06 30 0f 00 00 00"),
        _hex("07 05 02 02 00 04 00"),
        _hex("06 30 00 00 00 00"),
    ]
    assert hs[1:] == [_hex("07 05 81 02 00 02 00"), _hex("07 05 02 02 00 02 00")]
    assert fs[1:] == [_hex("07 05 81 02 40 00 00"), _hex("07 05 02 02 40 00 00")]


def test_numbering_helpers() -> None:
    config = _bulk_pair()
    assert interface_numbers(config) == {3: 0}
    assert endpoint_addresses(config) == (0x81, 0x02)
    assert string_indexes(config) == (7,)


def test_cdc_acm_refused() -> None:
    config = parse_configuration(CDC_ACM_CONFIG)
    assert check_expressible(config) == (
        "interface 0: class-specific descriptor 0x24 (Communications) — FunctionFS accepts "
        "only HID/CCID class descriptors",
    )
    with pytest.raises(FunctionFsUnsupported) as info:
        build_descriptors(config, speed=Speed.FULL)
    assert info.value.reasons == check_expressible(config)


def test_microphone_refused() -> None:
    reasons = check_expressible(parse_configuration(MICROPHONE_CONFIG))
    assert reasons[0] == (
        "interface 1 has alternate settings 0 and 1 — FunctionFS on this kernel cannot "
        "switch alternate settings"
    )
    assert [r.split(" — ")[0] for r in reasons[1:]] == [
        "interface 0: class-specific descriptor 0x24 (Audio)",
        "interface 1: class-specific descriptor 0x24 (Audio)",
        "interface 1: class-specific descriptor 0x25 (Audio)",
    ]


def test_endpoint_limit() -> None:
    endpoints = tuple(EndpointDescriptor(d | n, 2, 512, 0) for d in (0x80, 0) for n in range(1, 16))
    alt = InterfaceDescriptor(0, 0, 0xFF, 0, 0, endpoints=endpoints)
    assert check_expressible(Configuration(1, body=(alt,))) == ()
    alt = InterfaceDescriptor(0, 0, 0xFF, 0, 0, endpoints=(*endpoints, endpoints[0]))
    reasons = check_expressible(Configuration(1, body=(alt,)))
    assert reasons[0] == "31 endpoints — FunctionFS takes at most 30"


def test_duplicate_endpoint_and_long_hid_descriptor_refused() -> None:
    hid = RawDescriptor(0x21, bytes.fromhex("11 01 00 02 22 3f 00 22 10 00"))
    endpoints = (EndpointDescriptor(0x81, 3, 8, 10), EndpointDescriptor(0x81, 3, 8, 10))
    alt = InterfaceDescriptor(0, 0, 3, 0, 0, endpoints=endpoints, extra=(hid,))
    reasons = check_expressible(Configuration(1, body=(alt,)))
    assert reasons == (
        "interface 0: class descriptor 0x21 of 12 bytes — FunctionFS accepts only the 9-byte form",
        "endpoint 0x81 is described more than once — FunctionFS takes one descriptor per "
        "endpoint and speed",
    )


def test_strings_two_languages() -> None:
    strings = {0x0409: {2: "Disk", 5: "Flash"}, 0x0407: {2: "Platte"}}
    blob, mapping = build_strings(strings, [5, 0, 2, 5])
    assert mapping == {5: 1, 2: 2}
    assert blob == (
        struct.pack("<IIII", 2, len(blob), 2, 2) + b"\x09\x04Flash\0Disk\0" + b"\x07\x04\0Platte\0"
    )


def test_strings_none_wanted() -> None:
    blob, mapping = build_strings({0x0409: {1: "x"}}, [])
    assert (blob, mapping) == (struct.pack("<IIII", 2, 16, 0, 0), {})


def test_strings_without_languages_use_empty_english() -> None:
    blob, mapping = build_strings({}, [4])
    assert blob == struct.pack("<IIII", 2, 19, 1, 1) + b"\x09\x04\0"
    assert mapping == {4: 1}


def test_strings_refuse_nul() -> None:
    with pytest.raises(GadgetError):
        build_strings({0x0409: {1: "a\0b"}}, [1])
