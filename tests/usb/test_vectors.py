"""Fields, string indexes and HID report lengths of the real-device configurations."""

from __future__ import annotations

from tests.usb.vectors import (
    CDC_ACM_CONFIG,
    CDC_ECM_CONFIG,
    KEYBOARD_CONFIG,
    KEYBOARD_DEVICE,
    MASS_STORAGE_CONFIG,
    MASS_STORAGE_DEVICE,
    MICROPHONE_CONFIG,
)
from usbip_gadget.usb import (
    DescriptorType,
    DeviceDescriptor,
    HidDescriptor,
    RawDescriptor,
    TransferType,
    parse_configuration,
    referenced_string_indexes,
)


def test_mass_storage() -> None:
    config = parse_configuration(MASS_STORAGE_CONFIG)
    assert (config.b_configuration_value, config.bm_attributes, config.b_max_power) == (1, 0x80, 50)
    (alt,) = config.alt_settings
    assert (alt.b_interface_class, alt.b_interface_sub_class, alt.b_interface_protocol) == (
        8,
        6,
        0x50,
    )
    assert [
        (ep.b_endpoint_address, ep.transfer_type, ep.max_packet_size) for ep in alt.endpoints
    ] == [
        (0x81, TransferType.BULK, 512),
        (0x02, TransferType.BULK, 512),
    ]
    assert config.hid_report_lengths() == []
    device = DeviceDescriptor.parse(MASS_STORAGE_DEVICE)
    assert referenced_string_indexes(device, [config]) == [1, 2, 3]


def test_keyboard() -> None:
    config = parse_configuration(KEYBOARD_CONFIG)
    (alt,) = config.alt_settings
    assert alt.extra == (RawDescriptor(DescriptorType.HID, bytes.fromhex("01010001223f00")),)
    assert alt.hid_descriptor() == HidDescriptor(0x0101, 0, ((0x22, 63),))
    assert config.hid_report_lengths() == [(0, 63)]
    assert config.bm_attributes & 0x20  # remote wakeup
    (ep,) = config.endpoints()
    assert (ep.transfer_type, ep.max_packet_size, ep.b_interval) == (TransferType.INTERRUPT, 8, 10)
    device = DeviceDescriptor.parse(KEYBOARD_DEVICE)
    assert referenced_string_indexes(device, [config]) == [4, 14, 48]


def test_cdc_acm_composite() -> None:
    config = parse_configuration(CDC_ACM_CONFIG)
    (iad,) = config.associations
    assert (iad.b_first_interface, iad.b_interface_count, iad.b_function_class) == (0, 2, 2)
    assert isinstance(config.body[0], type(iad))
    comm = config.interfaces()[0][0]
    assert [raw.subtype for raw in comm.extra] == [0x00, 0x01, 0x02, 0x06]
    assert all(raw.b_descriptor_type == DescriptorType.CS_INTERFACE for raw in comm.extra)
    assert comm.extra[3].data == bytes.fromhex("060001")  # union: master 0, slave 1
    assert sorted(config.interfaces()) == [0, 1, 2]
    assert [ep.b_endpoint_address for ep in config.endpoints()] == [0x81, 0x02, 0x82]
    assert config.string_indexes() == {4, 5}
    assert config.b_max_power == 0xFA


def test_cdc_ecm_mac_address_string() -> None:
    config = parse_configuration(CDC_ECM_CONFIG)
    assert config.string_indexes() == {3}
    data_alts = config.interfaces()[1]
    assert [alt.b_num_endpoints for alt in data_alts] == [0, 2]


def test_microphone() -> None:
    config = parse_configuration(MICROPHONE_CONFIG)
    control, streaming = config.interfaces().values()
    assert len(control[0].extra) == 3
    assert [alt.b_alternate_setting for alt in streaming] == [0, 1]
    (ep,) = streaming[1].endpoints
    assert (ep.b_length, ep.b_refresh, ep.b_synch_address) == (9, 0, 0)
    assert ep.transfer_type == TransferType.ISOCHRONOUS
    assert ep.extra == (RawDescriptor(DescriptorType.CS_ENDPOINT, bytes.fromhex("0100000000")),)
    assert [raw.subtype for raw in streaming[1].extra] == [0x01, 0x02]
    assert config.string_indexes() == set()


def _patched(raw: bytes, changes: dict[int, int]) -> bytes:
    data = bytearray(raw)
    for offset, value in changes.items():
        data[offset] = value
    return bytes(data)


def test_uac1_terminal_strings() -> None:
    # Input terminal at 27: iChannelNames at +10, iTerminal at +11; output terminal at 39: +8.
    raw = _patched(MICROPHONE_CONFIG, {37: 6, 38: 7, 47: 8})
    assert parse_configuration(raw).string_indexes() == {6, 7, 8}


def test_uac1_unit_strings() -> None:
    feature = bytes.fromhex("092406030101010209")  # 1 channel, 1-byte controls, iFeature 9
    mixer = bytes.fromhex("0d2404040201020100000a000b")  # 2 pins; iChannelNames 10, iMixer 11
    selector = bytes.fromhex("082405050201020c")  # 2 pins; iSelector 12
    # 1 pin; iChannelNames 13, bControlSize 1, iProcessing 14
    processing = bytes.fromhex("0f2407060100 01 01 010000 0d 01 00 0e")
    units = feature + mixer + selector + processing
    header = bytes((9, 2, 18 + len(units), 0, 1, 1, 0, 0x80, 50)) + bytes.fromhex(
        "090400000001010000"
    )
    config = parse_configuration(header + units)
    assert config.string_indexes() == {9, 10, 11, 12, 13, 14}


def test_uvc_and_unknown_classes() -> None:
    # A camera terminal (iTerminal 0x15) and a processing unit (iProcessing 0x16).
    input_terminal = bytes.fromhex("122402010102 00 15 000000000000 03 000000")
    processing = bytes.fromhex("0c2405020100 00 02 0f00 16 00")
    vendor = bytes.fromhex("05240f0917")  # subtype 0x0F in a video interface: not scanned
    body = input_terminal + processing + vendor
    head = bytes((9, 2, 18 + len(body), 0, 1, 1, 0, 0x80, 50))
    config = parse_configuration(head + bytes.fromhex("0904000000 0e0100 00") + body)
    assert config.string_indexes() == {0x15, 0x16}
