"""Device descriptor, device qualifier, strings, HID descriptor and BOS codecs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.usb.strategies import (
    bos_descriptors,
    device_descriptors,
    device_qualifiers,
    hid_descriptors,
)
from tests.usb.vectors import MASS_STORAGE_DEVICE
from usbip_gadget import LocalProtocolError
from usbip_gadget.usb import (
    Bos,
    DescriptorError,
    DeviceCapability,
    DeviceDescriptor,
    DeviceQualifier,
    HidDescriptor,
    bos_total_length,
    decode_lang_ids,
    decode_string,
    encode_lang_ids,
    encode_string,
    parse_bos,
)


@given(device_descriptors)
def test_device_round_trip(device: DeviceDescriptor) -> None:
    assert DeviceDescriptor.parse(device.pack()) == device


def test_device_fields() -> None:
    device = DeviceDescriptor.parse(MASS_STORAGE_DEVICE)
    assert (device.id_vendor, device.id_product, device.bcd_usb) == (0x0781, 0x5567, 0x0200)
    assert (device.i_manufacturer, device.i_product, device.i_serial_number) == (1, 2, 3)
    assert device.b_max_packet_size0 == 64
    assert device.b_num_configurations == 1
    assert device.pack() == MASS_STORAGE_DEVICE


@pytest.mark.parametrize(
    "data",
    [
        MASS_STORAGE_DEVICE[:8],
        MASS_STORAGE_DEVICE + b"\x00",
        b"\x11" + MASS_STORAGE_DEVICE[1:],
        MASS_STORAGE_DEVICE[:1] + b"\x02" + MASS_STORAGE_DEVICE[2:],
    ],
)
def test_device_malformed(data: bytes) -> None:
    with pytest.raises(DescriptorError):
        DeviceDescriptor.parse(data)


@given(device_qualifiers)
def test_qualifier_round_trip(qualifier: DeviceQualifier) -> None:
    assert DeviceQualifier.parse(qualifier.pack()) == qualifier


def test_qualifier_bytes() -> None:
    raw = bytes.fromhex("0a060002000000400100")
    qualifier = DeviceQualifier.parse(raw)
    assert qualifier.bcd_usb == 0x0200
    assert qualifier.b_max_packet_size0 == 64
    assert qualifier.pack() == raw


@given(st.text(max_size=126))
def test_string_round_trip(text: str) -> None:
    try:
        raw = encode_string(text)
    except LocalProtocolError:
        assert len(text.encode("utf-16-le", "surrogatepass")) > 252 or any(
            0xD800 <= ord(char) <= 0xDFFF for char in text
        )
        return
    assert raw[0] == len(raw)
    assert decode_string(raw) == text


def test_string_bytes() -> None:
    assert encode_string("SanDisk") == b"\x10\x03S\x00a\x00n\x00D\x00i\x00s\x00k\x00"
    assert decode_string(b"\x02\x03") == ""
    with pytest.raises(LocalProtocolError):
        encode_string("x" * 127)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x04",
        b"\x04\x02A\x00",  # wrong type
        b"\x06\x03A\x00",  # bLength overruns
        b"\x05\x03A\x00B",  # odd
        b"\x04\x03\x00\xd8",  # lone surrogate
    ],
)
def test_string_malformed(data: bytes) -> None:
    with pytest.raises(DescriptorError):
        decode_string(data)


def test_string_lenient() -> None:
    assert decode_string(b"\x08\x03A\x00B\x00", lenient=True) == "AB"  # short read
    assert decode_string(b"\x04\x03A\x00B\x00", lenient=True) == "A"  # trailing junk
    assert decode_string(b"\x05\x03A\x00B", lenient=True) == "A"  # odd length
    assert decode_string(b"\x04\x03\x00\xd8", lenient=True) == "\ufffd"
    with pytest.raises(DescriptorError):
        decode_string(b"\x04\x01A\x00", lenient=True)


def test_lang_ids() -> None:
    assert decode_lang_ids(b"\x04\x03\x09\x04") == [0x0409]
    assert decode_lang_ids(encode_lang_ids([0x0409, 0x0407])) == [0x0409, 0x0407]
    assert decode_lang_ids(b"\x06\x03\x09\x04", lenient=True) == [0x0409]
    with pytest.raises(DescriptorError):
        decode_lang_ids(b"\x06\x03\x09\x04")
    with pytest.raises(LocalProtocolError):
        encode_lang_ids([0x10000])


@given(hid_descriptors)
def test_hid_round_trip(hid: HidDescriptor) -> None:
    assert HidDescriptor.parse(hid.pack()) == hid


def test_hid_fields() -> None:
    hid = HidDescriptor.parse(bytes.fromhex("092111010001223f00"))
    assert hid.bcd_hid == 0x0111
    assert hid.descriptors == ((0x22, 63),)
    assert hid.report_length == 63
    assert HidDescriptor(0x0111, 0, ((0x23, 10),)).report_length is None


@pytest.mark.parametrize("hexdata", ["0921110100", "0921110100012200", "0a2111010001223f0000"])
def test_hid_malformed(hexdata: str) -> None:
    with pytest.raises(DescriptorError):
        HidDescriptor.parse(bytes.fromhex(hexdata))


@given(bos_descriptors)
def test_bos_round_trip(bos: Bos) -> None:
    raw = bos.pack()
    assert bos_total_length(raw[:5]) == len(raw)
    assert parse_bos(raw) == bos
    assert parse_bos(raw, lenient=True) == bos


# A USB 3.0 device's BOS: USB 2.0 extension (LPM) and SuperSpeed capability.
BOS_RAW = bytes.fromhex("050f160002 07100206000000 0a1003000e00010aff07")


def test_bos_bytes() -> None:
    bos = parse_bos(BOS_RAW)
    assert [cap.b_dev_capability_type for cap in bos.capabilities] == [2, 3]
    assert bos.capabilities[0] == DeviceCapability(2, bytes.fromhex("06000000"))
    assert bos.pack() == BOS_RAW


@pytest.mark.parametrize(
    "data",
    [
        BOS_RAW[:4],
        b"\x06" + BOS_RAW[1:],
        BOS_RAW[:-1],
        BOS_RAW[:4] + b"\x03" + BOS_RAW[5:],  # bNumDeviceCaps
        BOS_RAW[:5] + b"\x07\x05" + BOS_RAW[7:],  # not a capability
        bytes.fromhex("050f040000"),  # wTotalLength below 5
    ],
)
def test_bos_malformed(data: bytes) -> None:
    with pytest.raises(DescriptorError):
        parse_bos(data)


def test_bos_lenient_truncated() -> None:
    assert parse_bos(BOS_RAW[:-3], lenient=True).capabilities == parse_bos(BOS_RAW).capabilities[:1]
