"""Hypothesis strategies for every descriptor and for whole configuration trees."""

from __future__ import annotations

from hypothesis import strategies as st

from usbip_gadget.usb import (
    Bos,
    Configuration,
    DescriptorType,
    DeviceCapability,
    DeviceDescriptor,
    DeviceQualifier,
    DeviceSnapshot,
    EndpointDescriptor,
    HidDescriptor,
    InterfaceAssociation,
    InterfaceDescriptor,
    RawDescriptor,
    SetupPacket,
    Speed,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)

# Types the configuration parser gives structure to, and HID (validated in HID interfaces).
_SPECIAL = {
    DescriptorType.CONFIGURATION,
    DescriptorType.INTERFACE,
    DescriptorType.ENDPOINT,
    DescriptorType.INTERFACE_ASSOCIATION,
    DescriptorType.HID,
}

setup_packets = st.builds(SetupPacket, u8, u8, u16, u16, u16)

device_descriptors = st.builds(DeviceDescriptor, u16, u8, u8, u8, u8, u16, u16, u16, u8, u8, u8, u8)

device_qualifiers = st.builds(DeviceQualifier, u16, u8, u8, u8, u8, u8, u8)

hid_descriptors = st.builds(
    HidDescriptor,
    u16,
    u8,
    st.lists(st.tuples(u8, u16), max_size=4).map(tuple),
)

raw_descriptors = st.builds(
    RawDescriptor,
    u8.filter(lambda dtype: dtype not in _SPECIAL),
    st.binary(max_size=24),
)

_extras = st.lists(raw_descriptors, max_size=3).map(tuple)


@st.composite
def endpoint_descriptors(draw: st.DrawFn) -> EndpointDescriptor:
    """Endpoints in the 7-byte form or the 9-byte audio form, with extra descriptors."""
    audio = draw(st.none() | st.tuples(u8, u8))
    refresh, synch = (None, None) if audio is None else audio
    return EndpointDescriptor(
        draw(u8), draw(u8), draw(u16), draw(u8), refresh, synch, extra=draw(_extras)
    )


@st.composite
def interface_descriptors(draw: st.DrawFn) -> InterfaceDescriptor:
    """Alternate settings; HID-class ones may carry a well-formed HID descriptor."""
    klass = draw(st.sampled_from([0x01, 0x02, 0x03, 0x08, 0x0E, 0xFF]) | u8)
    extra = draw(_extras)
    if klass == 0x03 and draw(st.booleans()):
        hid = RawDescriptor.parse(draw(hid_descriptors).pack())
        extra = (hid, *extra)
    endpoints = draw(st.lists(endpoint_descriptors(), max_size=4).map(tuple))
    numbers = st.integers(0, 7)
    return InterfaceDescriptor(
        draw(numbers),
        draw(st.integers(0, 3)),
        klass,
        draw(u8),
        draw(u8),
        draw(u8),
        endpoints,
        extra,
    )


interface_associations = st.builds(InterfaceAssociation, u8, u8, u8, u8, u8, u8, extra=_extras)

configurations = st.builds(
    Configuration,
    u8,
    u8,
    u8,
    u8,
    extra=_extras,
    body=st.lists(interface_descriptors() | interface_associations, max_size=6).map(tuple),
)

device_capabilities = st.builds(DeviceCapability, u8, st.binary(max_size=30))
bos_descriptors = st.builds(Bos, st.lists(device_capabilities, max_size=5).map(tuple))

_texts = st.text(max_size=20).filter(lambda text: len(text.encode("utf-16-le", "replace")) <= 252)


@st.composite
def snapshots(draw: st.DrawFn) -> DeviceSnapshot:
    """Snapshots built the way enumeration builds them, from raw bytes."""
    configs = draw(st.lists(configurations, max_size=2))
    lang_ids = draw(st.lists(u16, max_size=3, unique=True).map(tuple))
    strings = {
        lang: draw(st.dictionaries(st.integers(1, 255), _texts, max_size=3)) for lang in lang_ids
    }
    qualifier = draw(st.none() | device_qualifiers)
    bos = draw(st.none() | bos_descriptors)
    return DeviceSnapshot.from_raw(
        draw(st.text(max_size=12)),
        draw(st.sampled_from(Speed)),
        draw(device_descriptors).pack(),
        tuple(config.pack() for config in configs),
        lang_ids=lang_ids,
        strings=strings,
        bos_raw=None if bos is None else bos.pack(),
        device_qualifier_raw=None if qualifier is None else qualifier.pack(),
        hid_reports=draw(st.dictionaries(st.tuples(u8, u8), st.binary(max_size=16), max_size=3)),
    )
