"""What GadgetFS is given and what the host reads from it: endpoint files, the ep0 write, the
endpoint configuration writes, and the plan's list of differences."""

from __future__ import annotations

import struct

import pytest

from tests.usb.vectors import (
    CDC_ACM_CONFIG,
    CDC_ECM_CONFIG,
    KEYBOARD_CONFIG,
    KEYBOARD_DEVICE,
    MASS_STORAGE_CONFIG,
    MASS_STORAGE_DEVICE,
    MICROPHONE_CONFIG,
)
from usbip_gadget import NoBackend
from usbip_gadget._errors import GadgetFsUnsupported
from usbip_gadget.gadget import KNOWN_ENDPOINT_FILES, Backend, plan_backend
from usbip_gadget.gadget.gadgetfs import (
    CONTROL_LIMIT,
    ControllerEndpoint,
    gadgetfs_layout,
    map_endpoints,
    same_endpoint_addresses,
)
from usbip_gadget.usb import DeviceSnapshot, Speed, TransferType, parse_configuration

DUMMY = KNOWN_ENDPOINT_FILES["dummy_udc"]
DWC2 = [f"ep{n}{d}" for n in range(1, 8) for d in ("in", "out")]


def snapshot(
    config: bytes, device: bytes = MASS_STORAGE_DEVICE, speed: Speed = Speed.HIGH
) -> DeviceSnapshot:
    return DeviceSnapshot.from_raw("1-1", speed, device, (config,))


@pytest.mark.parametrize(
    ("name", "number", "is_in", "types"),
    [
        ("ep1in-bulk", 1, True, {TransferType.BULK, TransferType.INTERRUPT}),
        ("ep5in-int", 5, True, {TransferType.INTERRUPT}),
        ("ep12out-bulk", 12, False, {TransferType.BULK, TransferType.INTERRUPT}),
        ("ep-aout", None, False, set(TransferType) - {TransferType.CONTROL}),
        ("ep3in", 3, True, set(TransferType) - {TransferType.CONTROL}),
        ("ep2out-iso", 2, False, {TransferType.ISOCHRONOUS}),
    ],
)
def test_endpoint_file_names(
    name: str, number: int | None, is_in: bool, types: set[TransferType]
) -> None:
    parsed = ControllerEndpoint.parse(name)
    assert parsed is not None
    assert (parsed.number, parsed.is_in, set(parsed.types)) == (number, is_in, types)


@pytest.mark.parametrize("name", ["dummy_udc", "20980000.usb", "ep0", "ep16in", "ep"])
def test_ep0_and_other_names_are_not_endpoint_files(name: str) -> None:
    assert ControllerEndpoint.parse(name) is None


@pytest.mark.parametrize("files", [DUMMY, DWC2], ids=["dummy_udc", "dwc2"])
def test_every_address_is_kept_where_the_controller_has_it(files: list[str]) -> None:
    config = parse_configuration(CDC_ACM_CONFIG)
    slots = map_endpoints(config, files)
    assert {a: s.local for a, s in slots.items()} == {0x81: 0x81, 0x02: 0x02, 0x82: 0x82}
    assert len({s.file for s in slots.values()}) == 3


def test_an_interrupt_endpoint_on_dummy_uses_a_file_of_its_number() -> None:
    slots = map_endpoints(parse_configuration(KEYBOARD_CONFIG), DUMMY)
    assert slots[0x81].file == "ep1in-bulk"  # dummy_hcd takes interrupt on -bulk endpoints


def test_an_address_the_controller_lacks_moves_to_a_free_number() -> None:
    # Endpoint 9 IN: dwc2 on a Pi Zero has endpoints 1..7 only.
    config = parse_configuration(MASS_STORAGE_CONFIG.replace(b"\x07\x05\x81", b"\x07\x05\x89"))
    slots = map_endpoints(config, DWC2)
    assert slots[0x89].local == 0x81
    assert slots[0x89].file == "ep1in"
    assert slots[0x02].local == 0x02


def test_too_few_endpoints_is_refused_naming_the_endpoint() -> None:
    config = parse_configuration(CDC_ACM_CONFIG)
    with pytest.raises(GadgetFsUnsupported) as caught:
        map_endpoints(config, ["ep1in", "ep1out"])
    assert caught.value.reasons == (
        "no free controller endpoint can carry endpoint 0x82 (bulk IN) "
        "(the controller has ep1in, ep1out)",
    )


def test_isochronous_is_refused_on_a_controller_without_it() -> None:
    config = parse_configuration(MICROPHONE_CONFIG)
    assert map_endpoints(config, DWC2)[0x81].local == 0x81
    with pytest.raises(GadgetFsUnsupported, match="0x81 is isochronous"):
        map_endpoints(config, DUMMY, isochronous=False)


def test_the_ep0_write_is_tag_full_speed_high_speed_device() -> None:
    snap = snapshot(MASS_STORAGE_CONFIG)
    layout = gadgetfs_layout(snap, map_endpoints(snap.configurations[0], DUMMY))
    blob = layout.blob()
    assert struct.unpack_from("<I", blob)[0] == 0
    full, high = blob[4 : 4 + 32], blob[36 : 36 + 32]
    assert high == MASS_STORAGE_CONFIG  # served as the remote wrote it
    # Full speed: bulk packets of 64 bytes, everything else as written.
    assert full[:22] == MASS_STORAGE_CONFIG[:22]
    assert full[22:24] == b"\x40\x00"
    assert blob[68:] == MASS_STORAGE_DEVICE
    assert len(blob) == 4 + 32 + 32 + 18
    assert layout.differences == ()


def test_an_endpoint_is_configured_with_its_full_and_high_speed_descriptors() -> None:
    snap = snapshot(MASS_STORAGE_CONFIG)
    layout = gadgetfs_layout(snap, same_endpoint_addresses(snap.configurations[0]))
    written = layout.endpoint_config(snap.configurations[0].endpoints()[0])
    assert written == bytes.fromhex("010000000705810240000007058102000200")


def test_a_full_speed_keyboard_lists_what_gadgetfs_changes() -> None:
    snap = snapshot(KEYBOARD_CONFIG, KEYBOARD_DEVICE, Speed.FULL)
    layout = gadgetfs_layout(snap, map_endpoints(snap.configurations[0], DUMMY))
    changed = {(d.offset, d.field, d.remote, d.local) for d in layout.differences}
    assert changed == {
        (2, "bcdUSB", 0x10, 0x00),
        (3, "bcdUSB", 0x01, 0x02),
        (7, "bMaxPacketSize0", 8, 64),
        (18 + 7, "bmAttributes", 0xA0, 0x80),  # remote wakeup: GadgetFS refuses it
        (18 + 33, "endpoint 0x81 bInterval", 10, 7),  # 10 frames → 2^6 microframes
    }
    # The full-speed configuration is the remote's own, remote wakeup aside.
    assert layout.full_speed == KEYBOARD_CONFIG[:7] + b"\x80" + KEYBOARD_CONFIG[8:]
    assert layout.device[2:4] == b"\x00\x02"
    assert layout.device[17] == 1


def test_a_configuration_over_256_bytes_is_refused() -> None:
    interface = bytes.fromhex("09040000000affff00")
    body = interface * 30  # 270 bytes of interface descriptors
    total = 9 + len(body)
    config = bytes.fromhex("0902") + total.to_bytes(2, "little") + bytes.fromhex("0101008032")
    snap = snapshot(config + body)
    with pytest.raises(GadgetFsUnsupported, match=f"at most {CONTROL_LIMIT}"):
        gadgetfs_layout(snap, {})


def test_auto_takes_functionfs_when_it_can_and_gadgetfs_for_class_descriptors() -> None:
    assert plan_backend(snapshot(MASS_STORAGE_CONFIG)).backend == "functionfs"
    acm = plan_backend(snapshot(CDC_ACM_CONFIG), endpoint_files=DUMMY)
    assert acm.backend == "gadgetfs"
    assert any("0x24" in reason for reason in acm.functionfs_refuses)
    assert acm.differences == ()
    ecm = plan_backend(snapshot(CDC_ECM_CONFIG), endpoint_files=DUMMY)
    assert ecm.backend == "gadgetfs"  # alternate settings, too


def test_a_device_neither_can_replay_is_refused_with_both_reasons() -> None:
    with pytest.raises(NoBackend) as caught:
        plan_backend(snapshot(MICROPHONE_CONFIG), endpoint_files=DUMMY, driver="dummy_udc")
    assert "FunctionFS" in str(caught.value)
    assert "isochronous" in str(caught.value)
    with pytest.raises(NoBackend, match="FunctionFS cannot express"):
        plan_backend(snapshot(CDC_ACM_CONFIG), Backend.FUNCTIONFS)


def test_each_alternate_setting_configures_its_own_endpoint_descriptor() -> None:
    # Settings 1 and 2 of interface 0 both use 0x81, with 16- and 64-byte packets.
    config = bytes.fromhex(
        "09023200010100803209040000000aff0000"
        "09040001010aff0000"
        "07058103100004"
        "09040002010aff0000"
        "07058103400004"
    )
    snap = snapshot(config)
    layout = gadgetfs_layout(snap, map_endpoints(snap.configurations[0], DUMMY))
    alt1, alt2 = (alt.endpoints[0] for alt in snap.configurations[0].alt_settings[1:])
    assert layout.endpoint_config(alt1)[4:] == bytes.fromhex("0705810310000107058103100004")
    assert layout.endpoint_config(alt2)[4:] == bytes.fromhex("0705810340000107058103400004")


@pytest.mark.parametrize("requested", list(Backend))
def test_a_device_without_configurations_has_no_backend(requested: Backend) -> None:
    device = bytearray(MASS_STORAGE_DEVICE)
    device[17] = 0  # bNumConfigurations
    empty = DeviceSnapshot.from_raw("1-1", Speed.HIGH, bytes(device), ())
    with pytest.raises(NoBackend, match="no configuration 1"):
        plan_backend(empty, requested)
