"""SetupPacket and the request constants."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given

from tests.usb.strategies import setup_packets
from usbip_gadget import LocalProtocolError
from usbip_gadget.usb import (
    ClassCode,
    DescriptorError,
    DescriptorType,
    RequestType,
    SetupPacket,
    Speed,
    class_name,
)


@given(setup_packets)
def test_round_trip(packet: SetupPacket) -> None:
    assert len(packet.pack()) == 8
    assert SetupPacket.parse(packet.pack()) == packet


@pytest.mark.parametrize(
    ("packet", "wire"),
    [
        (SetupPacket.get_descriptor(DescriptorType.DEVICE, 0, 18), "8006000100001200"),
        (
            SetupPacket.get_descriptor(DescriptorType.STRING, 2, 255, lang_id=0x0409),
            "800602030904ff00",
        ),
        (
            SetupPacket.get_descriptor(
                DescriptorType.HID_REPORT, 0, 63, lang_id=1, recipient=RequestType.INTERFACE
            ),
            "8106002201003f00",
        ),
        (SetupPacket.set_configuration(1), "0009010000000000"),
        (SetupPacket.set_interface(1, 2), "010b020001000000"),
        (SetupPacket.clear_feature_halt(0x81), "0201000081000000"),
    ],
)
def test_standard_requests(packet: SetupPacket, wire: str) -> None:
    assert packet.pack().hex() == wire


def test_properties() -> None:
    packet = SetupPacket(0xA1, 0x01, 0x0100, 0, 8)  # HID GET_REPORT
    assert packet.is_in
    assert packet.type == RequestType.CLASS
    assert packet.recipient == RequestType.INTERFACE
    out = SetupPacket.set_configuration(1)
    assert not out.is_in
    assert out.type == RequestType.STANDARD
    assert out.recipient == RequestType.DEVICE


@pytest.mark.parametrize(
    "build",
    [
        lambda: SetupPacket(256, 0),
        lambda: SetupPacket(0, 0, w_length=0x10000),
        lambda: SetupPacket(0, -1),
        lambda: SetupPacket.get_descriptor(256, 0, 0),
        lambda: SetupPacket.get_descriptor(1, 256, 0),
        lambda: SetupPacket.get_descriptor(1, 0, 0, recipient=0x20),
        lambda: SetupPacket.set_interface(300, 0),
        lambda: SetupPacket.clear_feature_halt(0x100),
    ],
)
def test_out_of_range_values_are_refused(build: Callable[[], object]) -> None:
    with pytest.raises(LocalProtocolError):
        build()


@pytest.mark.parametrize("length", [0, 7, 9])
def test_parse_needs_eight_bytes(length: int) -> None:
    with pytest.raises(DescriptorError):
        SetupPacket.parse(bytes(length))


def test_speed_labels() -> None:
    assert [speed.label for speed in Speed] == [
        "unknown",
        "low",
        "full",
        "high",
        "wireless",
        "super",
        "super+",
    ]
    assert Speed.HIGH.rate == "480M"
    assert Speed.from_label("super+") is Speed.SUPER_PLUS
    with pytest.raises(ValueError, match="unknown speed"):
        Speed.from_label("warp")


def test_class_codes() -> None:
    assert (ClassCode.PER_INTERFACE, ClassCode.HID, ClassCode.VENDOR) == (0x00, 0x03, 0xFF)
    assert ClassCode(0x0A) is ClassCode.CDC_DATA
    assert ClassCode(0x12) is ClassCode.TYPE_C_BRIDGE
    assert class_name(ClassCode.HID) == "Human Interface Device"
    assert class_name(ClassCode.MISC) == "Miscellaneous Device"
