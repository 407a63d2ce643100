"""Field tables: offsets as the specs give them, checks, and agreement with every codec."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given

from tests.usb.strategies import (
    configurations,
    device_capabilities,
    device_descriptors,
    device_qualifiers,
    endpoint_descriptors,
    hid_descriptors,
    interface_associations,
    interface_descriptors,
    setup_packets,
)
from tests.usb.vectors import KEYBOARD_CONFIG, MASS_STORAGE_DEVICE
from usbip_gadget import LocalProtocolError
from usbip_gadget.usb import (
    Bos,
    Configuration,
    DeviceCapability,
    DeviceDescriptor,
    DeviceQualifier,
    EndpointDescriptor,
    HidDescriptor,
    InterfaceAssociation,
    InterfaceDescriptor,
    Layout,
    Request,
    RequestType,
    SetupPacket,
    split_descriptors,
)

# (table, size, {spec name: offset}) for every field, from the specs' tables.
SPEC_OFFSETS = [
    (SetupPacket.LAYOUT, 8, {"bmRequestType": 0, "bRequest": 1, "wValue": 2, "wIndex": 4,
                             "wLength": 6}),
    (DeviceDescriptor.LAYOUT, 18, {"bLength": 0, "bDescriptorType": 1, "bcdUSB": 2,
                                   "bDeviceClass": 4, "bDeviceSubClass": 5,
                                   "bDeviceProtocol": 6, "bMaxPacketSize0": 7, "idVendor": 8,
                                   "idProduct": 10, "bcdDevice": 12, "iManufacturer": 14,
                                   "iProduct": 15, "iSerialNumber": 16,
                                   "bNumConfigurations": 17}),
    (DeviceQualifier.LAYOUT, 10, {"bcdUSB": 2, "bDeviceClass": 4, "bDeviceSubClass": 5,
                                  "bDeviceProtocol": 6, "bMaxPacketSize0": 7,
                                  "bNumConfigurations": 8, "bReserved": 9}),
    (Configuration.LAYOUT, 9, {"wTotalLength": 2, "bNumInterfaces": 4,
                               "bConfigurationValue": 5, "iConfiguration": 6,
                               "bmAttributes": 7, "bMaxPower": 8}),
    (InterfaceDescriptor.LAYOUT, 9, {"bInterfaceNumber": 2, "bAlternateSetting": 3,
                                     "bNumEndpoints": 4, "bInterfaceClass": 5,
                                     "bInterfaceSubClass": 6, "bInterfaceProtocol": 7,
                                     "iInterface": 8}),
    (EndpointDescriptor.LAYOUT, 7, {"bEndpointAddress": 2, "bmAttributes": 3,
                                    "wMaxPacketSize": 4, "bInterval": 6}),
    (EndpointDescriptor.AUDIO_LAYOUT, 9, {"bInterval": 6, "bRefresh": 7, "bSynchAddress": 8}),
    (InterfaceAssociation.LAYOUT, 8, {"bFirstInterface": 2, "bInterfaceCount": 3,
                                      "bFunctionClass": 4, "bFunctionSubClass": 5,
                                      "bFunctionProtocol": 6, "iFunction": 7}),
    (HidDescriptor.LAYOUT, 6, {"bcdHID": 2, "bCountryCode": 4, "bNumDescriptors": 5}),
    (Bos.LAYOUT, 5, {"wTotalLength": 2, "bNumDeviceCaps": 4}),
    (DeviceCapability.LAYOUT, 3, {"bDevCapabilityType": 2}),
]  # fmt: skip


@pytest.mark.parametrize(("layout", "size", "offsets"), SPEC_OFFSETS)
def test_offsets_match_the_spec(layout: Layout, size: int, offsets: dict[str, int]) -> None:
    assert layout.size == size
    for spec, offset in offsets.items():
        assert layout.offset_of(spec) == layout.offsets[spec] == offset
    ends = [layout.offset_of(spec) + layout.size_of(spec) for spec in layout.offsets]
    assert ends[-1] == size


# Classes whose leading fields a table's attributes fill, in order.
TABLES = [
    (SetupPacket, SetupPacket.LAYOUT),
    (DeviceDescriptor, DeviceDescriptor.LAYOUT),
    (DeviceQualifier, DeviceQualifier.LAYOUT),
    (Configuration, Configuration.LAYOUT),
    (InterfaceDescriptor, InterfaceDescriptor.LAYOUT),
    (EndpointDescriptor, EndpointDescriptor.LAYOUT),
    (EndpointDescriptor, EndpointDescriptor.AUDIO_LAYOUT),
    (InterfaceAssociation, InterfaceAssociation.LAYOUT),
    (HidDescriptor, HidDescriptor.LAYOUT),
    (DeviceCapability, DeviceCapability.LAYOUT),
]


@pytest.mark.parametrize(("cls", "layout"), TABLES)
def test_attributes_are_the_leading_fields(cls: type, layout: Layout) -> None:
    names = [field.name for field in dataclasses.fields(cls)]
    assert tuple(names[: len(layout.attributes)]) == layout.attributes


def _agrees(layout: Layout, obj: object, packed: bytes) -> None:
    """``packed`` starts with ``obj``'s fields where the table says they are."""
    fields = layout.unpack(packed)
    for spec, attr, _code in layout.rows:
        if attr is not None:
            assert fields[spec] == getattr(obj, attr)
    assert fields["bLength"] == packed[0]


@given(device_descriptors)
def test_device_table(device: DeviceDescriptor) -> None:
    _agrees(DeviceDescriptor.LAYOUT, device, device.pack())
    assert DeviceDescriptor.LAYOUT.pack(device) == device.pack()


@given(device_qualifiers)
def test_qualifier_table(qualifier: DeviceQualifier) -> None:
    _agrees(DeviceQualifier.LAYOUT, qualifier, qualifier.pack())


@given(configurations)
def test_configuration_table(config: Configuration) -> None:
    packed = config.pack()
    _agrees(Configuration.LAYOUT, config, packed)
    fields = Configuration.LAYOUT.unpack(packed)
    assert (fields["wTotalLength"], fields["bNumInterfaces"]) == (
        len(packed),
        config.b_num_interfaces,
    )


@given(interface_descriptors())
def test_interface_table(alt: InterfaceDescriptor) -> None:
    packed = alt.pack()
    _agrees(InterfaceDescriptor.LAYOUT, alt, packed)
    assert InterfaceDescriptor.LAYOUT.unpack(packed)["bNumEndpoints"] == len(alt.endpoints)


@given(endpoint_descriptors())
def test_endpoint_table(ep: EndpointDescriptor) -> None:
    layout = EndpointDescriptor.LAYOUT if ep.b_refresh is None else EndpointDescriptor.AUDIO_LAYOUT
    _agrees(layout, ep, ep.pack())
    assert layout.size == ep.b_length


@given(interface_associations)
def test_association_table(iad: InterfaceAssociation) -> None:
    _agrees(InterfaceAssociation.LAYOUT, iad, iad.pack())


@given(hid_descriptors)
def test_hid_table(hid: HidDescriptor) -> None:
    packed = hid.pack()
    _agrees(HidDescriptor.LAYOUT, hid, packed)
    assert HidDescriptor.LAYOUT.unpack(packed)["bNumDescriptors"] == len(hid.descriptors)


@given(device_capabilities)
def test_capability_table(capability: DeviceCapability) -> None:
    _agrees(DeviceCapability.LAYOUT, capability, capability.pack())


@given(setup_packets)
def test_setup_table(packet: SetupPacket) -> None:
    # SetupPacket.pack spells its fields out for speed; the table must say the same.
    assert SetupPacket.LAYOUT.pack(packet) == packet.pack()
    assert SetupPacket(*SetupPacket.LAYOUT.values(packet.pack())) == packet


def test_offsets_read_real_descriptors() -> None:
    device = DeviceDescriptor.LAYOUT
    assert MASS_STORAGE_DEVICE[device.offset_of("bNumConfigurations")] == 1
    assert MASS_STORAGE_DEVICE[device.offset_of("bMaxPacketSize0")] == 64
    at = device.offset_of("idVendor")
    assert MASS_STORAGE_DEVICE[at : at + device.size_of("idVendor")] == bytes.fromhex("8107")
    interface = split_descriptors(KEYBOARD_CONFIG)[1]
    assert interface[InterfaceDescriptor.LAYOUT.offset_of("bInterfaceClass")] == 0x03


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SetupPacket(256, 0), "bm_request_type=256 is out of range 0..255"),
        (lambda: SetupPacket(0, 0, w_length=0x10000), "w_length=65536 is out of range 0..65535"),
        (lambda: SetupPacket(True, 0), "bm_request_type must be an int, not bool"),
        (lambda: SetupPacket(0, 0, w_index=1.0), "w_index must be an int, not float"),  # type: ignore[arg-type]
        # One-byte fields are checked first, whatever the wire order.
        (lambda: SetupPacket(0, 256, w_value=-1), "b_request=256 is out of range 0..255"),
        (
            lambda: DeviceDescriptor(0x10000, 0, 0, 0, 64, 0, 0, 0, 0, 300, 0, 1),
            "i_product=300 is out of range 0..255",
        ),
        (
            lambda: EndpointDescriptor(0x81, 2, 0x10000, 256),
            "b_interval=256 is out of range 0..255",
        ),
        (
            lambda: EndpointDescriptor(0x81, 1, 512, 1, 0, 256),
            "b_synch_address=256 is out of range 0..255",
        ),
        (lambda: HidDescriptor(-1, 0), "bcd_hid=-1 is out of range 0..65535"),
        (lambda: InterfaceAssociation(0, 1, 2, 3, 4, 256), "i_function=256 is out of range 0..255"),
        (lambda: Configuration(1, b_max_power=999), "b_max_power=999 is out of range 0..255"),
        (
            lambda: DeviceQualifier(0x200, 0, 0, 0, 64, 1, -2),
            "b_reserved=-2 is out of range 0..255",
        ),
    ],
)
def test_out_of_range_messages(build: Callable[[], object], message: str) -> None:
    with pytest.raises(LocalProtocolError) as caught:
        build()
    assert str(caught.value) == message


def test_int_enums_are_accepted() -> None:
    request_type = RequestType.IN | RequestType.STANDARD | RequestType.DEVICE
    packet = SetupPacket(request_type, Request.GET_DESCRIPTOR, 0x0100, 0, 18)
    assert packet.pack().hex() == "8006000100001200"


def test_layout_helper() -> None:
    layout = Layout(
        ("bSize", None, "B"),
        ("wCount", "count", "H"),
        ("dwFlags", "flags", "I"),
        constants={"bSize": 7},
    )
    assert (layout.format, layout.size, layout.attributes) == ("<BHI", 7, ("count", "flags"))
    assert dict(layout.offsets) == {"bSize": 0, "wCount": 1, "dwFlags": 3}
    item = _Pair(count=0x0102, flags=0x03040506)
    assert layout.pack(item).hex() == "07020106050403"
    assert layout.pack(item, bSize=9)[0] == 9
    assert layout.unpack(bytes.fromhex("07020106050403ff")) == {
        "bSize": 7,
        "wCount": 0x0102,
        "dwFlags": 0x03040506,
    }
    assert layout.values(bytes.fromhex("07020106050403")) == (0x0102, 0x03040506)
    assert layout.arguments(bytes.fromhex("07020106050403")) == {
        "count": 0x0102,
        "flags": 0x03040506,
    }
    layout.check(item)
    with pytest.raises(LocalProtocolError, match="flags=4294967296 is out of range"):
        layout.check(_Pair(count=0, flags=1 << 32))


@pytest.mark.parametrize(
    "rows",
    [
        (("bA", "a", "B"), ("bA", "b", "B")),  # a spec name twice
        (("bA", "a", "b"),),  # signed
        (("bA", "a", ">H"),),  # not a single little-endian code
    ],
)
def test_malformed_tables_are_refused(rows: tuple[tuple[str, str | None, str], ...]) -> None:
    with pytest.raises(ValueError, match="malformed field table"):
        Layout(*rows)


@dataclasses.dataclass(frozen=True, slots=True)
class _Pair:
    count: int
    flags: int
