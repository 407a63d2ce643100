"""Configuration trees: round trips, strict checks, lenient parsing of short reads."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given

from tests.usb.strategies import configurations, endpoint_descriptors, interface_descriptors
from tests.usb.vectors import ALL_CONFIGS, CDC_ACM_CONFIG, MASS_STORAGE_CONFIG
from usbip_gadget import LocalProtocolError
from usbip_gadget.usb import (
    Configuration,
    DescriptorError,
    EndpointDescriptor,
    InterfaceAssociation,
    InterfaceDescriptor,
    RawDescriptor,
    config_total_length,
    parse_configuration,
    split_descriptors,
)


@given(configurations)
def test_round_trip(config: Configuration) -> None:
    raw = config.pack()
    assert config_total_length(raw[:9]) == len(raw) == config.w_total_length
    parsed = parse_configuration(raw)
    assert parsed == config
    assert parsed.pack() == raw
    assert parse_configuration(raw, lenient=True) == config


@given(configurations)
def test_counts_are_computed(config: Configuration) -> None:
    pieces = split_descriptors(config.pack())
    assert pieces[0][4] == len({alt.b_interface_number for alt in config.alt_settings})
    counts = [piece[4] for piece in pieces if piece[1] == 4 and len(piece) == 9]
    assert counts == [alt.b_num_endpoints for alt in config.alt_settings]


@given(endpoint_descriptors())
def test_endpoint_round_trip(ep: EndpointDescriptor) -> None:
    assert EndpointDescriptor.parse(ep.pack()) == ep


@given(interface_descriptors())
def test_interface_round_trip(alt: InterfaceDescriptor) -> None:
    assert InterfaceDescriptor.parse(alt.pack()) == alt


@pytest.mark.parametrize("name", sorted(ALL_CONFIGS))
def test_real_devices_round_trip(name: str) -> None:
    raw = ALL_CONFIGS[name]
    assert parse_configuration(raw).pack() == raw
    assert parse_configuration(raw, lenient=True) == parse_configuration(raw)


def test_order_is_kept() -> None:
    otg = RawDescriptor(0x09, b"\x03")
    vendor = RawDescriptor(0x41, b"\x01\x02")
    config = Configuration(
        1,
        extra=(otg,),
        body=(
            InterfaceDescriptor(0, 0, 0xFF, 0, 0, extra=(vendor,)),
            InterfaceAssociation(1, 1, 0xFF, 0, 0, extra=(vendor,)),
            InterfaceDescriptor(1, 0, 0xFF, 0, 0),
            InterfaceDescriptor(0, 1, 0xFF, 0, 0),
        ),
    )
    raw = config.pack()
    assert [piece[1] for piece in split_descriptors(raw)] == [2, 9, 4, 0x41, 11, 0x41, 4, 4]
    assert parse_configuration(raw) == config
    assert config.b_num_interfaces == 2
    assert [len(alts) for alts in config.interfaces().values()] == [2, 1]


def _with_header(body: bytes, *, interfaces: int = 1) -> bytes:
    total = 9 + len(body)
    return bytes((9, 2, total & 0xFF, total >> 8, interfaces, 1, 0, 0x80, 50)) + body


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (MASS_STORAGE_CONFIG + b"\x00", "wTotalLength"),
        (MASS_STORAGE_CONFIG[:-1], "wTotalLength"),
        (MASS_STORAGE_CONFIG[:4] + b"\x02" + MASS_STORAGE_CONFIG[5:], "bNumInterfaces"),
        (MASS_STORAGE_CONFIG[:13] + b"\x03" + MASS_STORAGE_CONFIG[14:], "bNumEndpoints"),
        (_with_header(bytes.fromhex("0a040000000800000000")), "INTERFACE descriptor: bLength"),
        (_with_header(bytes.fromhex("0904000001080000000805810200020000")), "ENDPOINT descriptor"),
        (_with_header(bytes.fromhex("07058102000200"), interfaces=0), "unexpected ENDPOINT"),
        (_with_header(bytes.fromhex("0100"), interfaces=0), "below 2"),
        (_with_header(bytes.fromhex("05240001"), interfaces=0), "overruns"),
        (_with_header(bytes.fromhex("080b000102020000 07058102000200")), "unexpected ENDPOINT"),
        (_with_header(bytes.fromhex("090200000101008032"), interfaces=0), "CONFIGURATION"),
        (_with_header(bytes.fromhex("090400000003000000 0921"), interfaces=1), "offset"),
    ],
)
def test_strict_errors(raw: bytes, message: str) -> None:
    with pytest.raises(DescriptorError, match=message):
        parse_configuration(raw)


def test_strict_rejects_a_malformed_hid_descriptor() -> None:
    raw = _with_header(bytes.fromhex("090400000003000000 0821110100012200"))
    with pytest.raises(DescriptorError, match="HID"):
        parse_configuration(raw)
    assert parse_configuration(raw, lenient=True).hid_report_lengths() == []


@pytest.mark.parametrize(
    "header",
    [b"", bytes(9), bytes.fromhex("0a0220000101008032"), b"\x09\x03\x20\x00", b"\x09\x02\x08\x00"],
)
def test_total_length_errors(header: bytes) -> None:
    with pytest.raises(DescriptorError):
        config_total_length(header + bytes(9))


def test_lenient_truncated() -> None:
    short = CDC_ACM_CONFIG[:65]  # ends inside the data interface's first endpoint
    with pytest.raises(DescriptorError):
        parse_configuration(short)
    config = parse_configuration(short, lenient=True)
    assert [alt.b_interface_number for alt in config.alt_settings] == [0, 1]
    assert config.alt_settings[1].endpoints == ()
    assert len(config.alt_settings[0].extra) == 4
    # Counts are recomputed: two interfaces, and no endpoint left in interface 1.
    assert config.pack() == bytes((9, 2, 61, 0, 2)) + short[5:56] + b"\x00" + short[57:61]
    assert config.string_indexes() == {4}


def test_lenient_header_only() -> None:
    config = parse_configuration(MASS_STORAGE_CONFIG[:9], lenient=True)
    assert config.body == ()
    assert config.b_configuration_value == 1


def test_lenient_mismatched_counts_and_sizes() -> None:
    raw = _with_header(
        bytes.fromhex("090400000508000000 0a058102000200000000 07050202000200 0705"),
        interfaces=3,
    )
    config = parse_configuration(raw, lenient=True)
    (alt,) = config.alt_settings
    assert alt.extra == (RawDescriptor(5, bytes.fromhex("8102000200000000")),)
    assert [ep.b_endpoint_address for ep in alt.endpoints] == [0x02]


def test_lenient_keeps_misplaced_endpoints_raw() -> None:
    raw = _with_header(bytes.fromhex("07058102000200"), interfaces=0)
    config = parse_configuration(raw, lenient=True)
    assert config.extra == (RawDescriptor(5, bytes.fromhex("8102000200")),)
    assert config.pack() == raw


def test_endpoint_properties() -> None:
    ep = EndpointDescriptor(0x83, 0x05, 0x1400, 1)
    assert (ep.number, ep.is_in, ep.max_packet_size, ep.packets_per_microframe) == (
        3,
        True,
        1024,
        3,
    )
    assert ep.transfer_type.name == "ISOCHRONOUS"
    assert EndpointDescriptor(0x02, 0x02, 512, 0).b_length == 7
    assert EndpointDescriptor(0x02, 0x01, 512, 1, 0, 0).b_length == 9


@pytest.mark.parametrize(
    "build",
    [
        lambda: EndpointDescriptor(0x81, 2, 0x10000, 0),
        lambda: EndpointDescriptor(0x81, 1, 64, 1, b_refresh=0),
        lambda: InterfaceDescriptor(256, 0, 0, 0, 0),
        lambda: RawDescriptor(0x24, bytes(254)),
        lambda: Configuration(
            1,
            body=(
                InterfaceDescriptor(0, 0, 0, 0, 0, extra=(RawDescriptor(0x24, bytes(253)),) * 300),
            ),
        ).pack(),
    ],
)
def test_model_refuses_bad_values(build: Callable[[], object]) -> None:
    with pytest.raises(LocalProtocolError):
        build()


def test_split_descriptors_lenient_stops() -> None:
    assert split_descriptors(b"\x03\x24\x01\x05\x24", lenient=True) == [b"\x03\x24\x01"]
    assert split_descriptors(b"\x03\x24\x01\x00\x24", lenient=True) == [b"\x03\x24\x01"]
