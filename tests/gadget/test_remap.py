"""Remote ↔ local numbers in SETUP packets and configuration descriptors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.usb.vectors import CDC_ACM_CONFIG, MASS_STORAGE_CONFIG
from usbip_gadget._errors import GadgetError
from usbip_gadget.gadget._remap import Remap
from usbip_gadget.usb import RequestType, SetupPacket, parse_configuration

IN_CLASS = RequestType.IN | RequestType.CLASS


def test_interface_request_low_byte_only() -> None:
    remap = Remap.build(interfaces={2: 0})
    setup = SetupPacket(IN_CLASS | RequestType.INTERFACE, 0x81, 0x0200, 0x0500, 2)
    assert remap.setup_to_remote(setup).w_index == 0x0502


def test_endpoint_request() -> None:
    remap = Remap.build(endpoints={0x83: 0x81})
    setup = SetupPacket.clear_feature_halt(0x81)
    assert remap.setup_to_remote(setup) == SetupPacket.clear_feature_halt(0x83)


@pytest.mark.parametrize("recipient", [RequestType.DEVICE, RequestType.OTHER])
def test_device_and_other_untouched(recipient: int) -> None:
    remap = Remap.build(interfaces={1: 0}, endpoints={1: 0})
    setup = SetupPacket(IN_CLASS | recipient, 0, 0, 0, 4)
    assert remap.setup_to_remote(setup) is setup


def test_unmapped_is_identity() -> None:
    setup = SetupPacket(IN_CLASS | RequestType.INTERFACE, 1, 0, 9, 1)
    assert Remap.build(interfaces={1: 0}).setup_to_remote(setup) is setup


def test_not_one_to_one_refused() -> None:
    with pytest.raises(GadgetError):
        Remap.build(interfaces={1: 0, 2: 0})
    with pytest.raises(GadgetError):
        Remap.build(endpoints={0x81: 0x100})


def test_ep0_events_numbering() -> None:
    config = parse_configuration(MASS_STORAGE_CONFIG)
    plain = Remap.for_ep0_events(config, virtual_addr=False)
    assert plain.endpoints == ((0x02, 2), (0x81, 1))
    assert plain.interfaces == ((0, 0),)
    virtual = Remap.for_ep0_events(config, virtual_addr=True)
    assert virtual.endpoints == ((0x02, 0x02), (0x81, 0x81))


def test_from_kernel_and_descriptor_to_local() -> None:
    config = parse_configuration(CDC_ACM_CONFIG)
    remap = Remap.from_kernel(
        config,
        interface_numbers=[3, 4, 5],
        endpoint_addresses=[0x83, 0x04, 0x85],
        strings={4: 9, 5: 10},
    )
    local = remap.descriptor_to_local(CDC_ACM_CONFIG)
    expected = bytearray(CDC_ACM_CONFIG)
    # IAD bFirstInterface, iFunction; interfaces and their iInterface; endpoint addresses.
    # The CDC union descriptor (offsets 40..44) still names the remote interfaces.
    for offset, value in [(11, 3), (16, 9), (19, 3), (25, 9), (47, 0x83)]:
        expected[offset] = value
    for offset, value in [(54, 4), (63, 0x04), (70, 0x85), (77, 5), (83, 10)]:
        expected[offset] = value
    assert local == bytes(expected)
    assert remap.inverse().descriptor_to_local(local) == CDC_ACM_CONFIG


def test_from_kernel_count_mismatch() -> None:
    config = parse_configuration(MASS_STORAGE_CONFIG)
    with pytest.raises(GadgetError):
        Remap.from_kernel(config, interface_numbers=[0, 1], endpoint_addresses=[1, 2])


def test_descriptor_identity_and_truncation() -> None:
    assert Remap().descriptor_to_local(MASS_STORAGE_CONFIG) is MASS_STORAGE_CONFIG
    remap = Remap.build(endpoints={0x81: 0x82})
    truncated = MASS_STORAGE_CONFIG[:20]
    assert remap.descriptor_to_local(truncated) == truncated
    assert remap.descriptor_to_local(MASS_STORAGE_CONFIG)[20] == 0x82


_perms = st.lists(st.integers(0, 255), min_size=1, max_size=8, unique=True).flatmap(
    lambda keys: st.permutations(keys).map(lambda values: dict(zip(keys, values, strict=True)))
)


@given(
    interfaces=_perms,
    endpoints=_perms,
    setup=st.builds(
        SetupPacket,
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
    ),
)
def test_setup_round_trip(
    interfaces: dict[int, int], endpoints: dict[int, int], setup: SetupPacket
) -> None:
    remap = Remap.build(interfaces=interfaces, endpoints=endpoints)
    assert remap.inverse().setup_to_remote(remap.setup_to_remote(setup)) == setup
    assert remap.inverse().inverse() == remap


@given(st.binary(max_size=80), _perms)
def test_descriptor_round_trip(raw: bytes, endpoints: dict[int, int]) -> None:
    remap = Remap.build(interfaces=endpoints, endpoints=endpoints, strings=endpoints)
    assert remap.inverse().descriptor_to_local(remap.descriptor_to_local(raw)) == raw
