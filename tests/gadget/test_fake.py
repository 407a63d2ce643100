"""The in-memory gadget: composite.c + FunctionFS + a UDC, driven from the host's side."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import trio
import trio.testing

from tests.calls import Call
from tests.client.fakes import FakeUsbDevice, disk, keyboard
from tests.usb.vectors import CDC_ACM_CONFIG, KEYBOARD_REPORT
from usbip_gadget import EndpointShutdown
from usbip_gadget._errors import FunctionFsUnsupported, GadgetError
from usbip_gadget.gadget import Ep0Event, Ep0EventType
from usbip_gadget.gadget._backend import GadgetBackend
from usbip_gadget.gadget._remap import Remap
from usbip_gadget.testing import FakeGadget, HostBabble, HostError, HostStall, HostTimeout
from usbip_gadget.usb import (
    DescriptorType,
    DeviceDescriptor,
    DeviceSnapshot,
    FeatureSelector,
    Request,
    RequestType,
    SetupPacket,
    Speed,
    decode_lang_ids,
    decode_string,
    parse_configuration,
)

T = TypeVar("T")
TIMEOUT = 5

BIND = Ep0Event(Ep0EventType.BIND)
ENABLE = Ep0Event(Ep0EventType.ENABLE)
DISABLE = Ep0Event(Ep0EventType.DISABLE)

IN_CLASS_INTERFACE = RequestType.IN | RequestType.CLASS | RequestType.INTERFACE
OUT_CLASS_INTERFACE = RequestType.OUT | RequestType.CLASS | RequestType.INTERFACE
IN_VENDOR_DEVICE = RequestType.IN | RequestType.VENDOR | RequestType.DEVICE
OUT_VENDOR_ENDPOINT = RequestType.OUT | RequestType.VENDOR | RequestType.ENDPOINT

# A vendor composite: an IAD over interfaces 2 and 3 (not 0-based), string indexes that are
# not 1..n, bMaxPacketSize0 8 and no serial number.
VENDOR_DEVICE = bytes.fromhex("12010002ef02010834127856000110110001")
VENDOR_CONFIG = bytes.fromhex(
    "09023800020112c032"  # bmAttributes 0xc0 (self-powered), iConfiguration 0x12
    "080b0202ff000006"  # IAD: interfaces 2..3, iFunction 6
    "0904020001ff000007"  # interface 2, iInterface 7
    "0705830308000a"  # interrupt IN 0x83, 8 bytes
    "0904030002ff000009"  # interface 3, iInterface 9
    "07050402000200"  # bulk OUT 0x04, 512 bytes
    "07058502000200"  # bulk IN 0x85, 512 bytes
)
VENDOR_STRINGS = {
    0x0409: {0x10: "Acme", 0x11: "Widget", 0x12: "Default", 6: "Function", 7: "Control", 9: "Data"},
    0x0407: {0x10: "Acme", 7: "Steuerung"},
}


def vendor() -> FakeGadget:
    snapshot = DeviceSnapshot.from_raw(
        "1-1",
        Speed.HIGH,
        VENDOR_DEVICE,
        (VENDOR_CONFIG,),
        lang_ids=(0x0409, 0x0407),
        strings=VENDOR_STRINGS,
    )
    return FakeGadget(snapshot)


def snapshot_of(device: FakeUsbDevice) -> DeviceSnapshot:
    return DeviceSnapshot.from_raw(
        device.busid,
        Speed.HIGH,
        device.device_raw,
        tuple(device.configs_raw),
        lang_ids=tuple(device.strings),
        strings=device.strings,
    )


async def configured(fake: FakeGadget) -> FakeGadget:
    """Connect, SET_CONFIGURATION, and read BIND and ENABLE."""
    fake.host.connect()
    with trio.fail_after(TIMEOUT):
        assert await fake.events() == [BIND]
        await fake.host.control(SetupPacket.set_configuration(1))
        assert await fake.events() == [ENABLE]
    return fake


async def storage() -> FakeGadget:
    """A configured flash drive: bulk IN 0x81 and bulk OUT 0x02, 512 bytes a packet."""
    return await configured(FakeGadget(snapshot_of(disk())))


def get_descriptor(kind: int, index: int = 0, length: int = 255, lang: int = 0) -> SetupPacket:
    return SetupPacket.get_descriptor(kind, index, length, lang_id=lang)


async def read_string(fake: FakeGadget, index: int, lang: int = 0x0409) -> str:
    raw = await fake.host.control(get_descriptor(DescriptorType.STRING, index, lang=lang))
    return decode_string(raw)


def test_implements_the_backend_protocol() -> None:
    backend: GadgetBackend = vendor()  # mypy checks the structure
    assert backend.name == "fake"
    assert [ep.descriptor.b_endpoint_address for ep in backend.endpoints] == [0x83, 0x04, 0x85]


def test_unexpressible_configuration_refused() -> None:
    device = FakeUsbDevice(device_raw=VENDOR_DEVICE, configs_raw=[CDC_ACM_CONFIG])
    with pytest.raises(FunctionFsUnsupported):
        FakeGadget(snapshot_of(device))
    with pytest.raises(GadgetError):
        FakeGadget(snapshot_of(disk()), config_index=1)


# -- standard requests answered by the UDC and composite.c --------------------------------


async def test_device_descriptor() -> None:
    fake = vendor()
    fake.host.connect()
    with trio.fail_after(TIMEOUT):
        raw = await fake.host.control(get_descriptor(DescriptorType.DEVICE, length=18))
    device = DeviceDescriptor.parse(raw)
    assert (device.id_vendor, device.id_product, device.bcd_device) == (0x1234, 0x5678, 0x0100)
    assert device.b_max_packet_size0 == 64
    assert (device.i_manufacturer, device.i_product, device.i_serial_number) == (1, 2, 0)
    assert device.b_num_configurations == 1
    assert fake.queued_events == (BIND,)  # nothing reached ep0


async def test_configuration_descriptor_is_renumbered() -> None:
    fake = vendor()
    fake.host.connect()
    with trio.fail_after(TIMEOUT):
        head = await fake.host.control(get_descriptor(DescriptorType.CONFIGURATION, length=9))
        raw = await fake.host.control(get_descriptor(DescriptorType.CONFIGURATION))
    assert head == raw[:9]
    config = parse_configuration(raw)
    assert config.i_configuration == 4  # after the device strings 1..3
    [iad] = config.associations
    assert (iad.b_first_interface, iad.i_function) == (0, 5)
    alts = config.alt_settings
    assert [(alt.b_interface_number, alt.i_interface) for alt in alts] == [(0, 6), (1, 7)]
    assert [ep.b_endpoint_address for ep in config.endpoints()] == [0x83, 0x04, 0x85]
    expected = Remap.build(
        interfaces={2: 0, 3: 1},
        endpoints={0x83: 0x83, 0x04: 0x04, 0x85: 0x85},
        strings={6: 5, 7: 6, 9: 7},
    )
    assert fake.host_remap == expected
    renumbered = bytearray(expected.descriptor_to_local(VENDOR_CONFIG))
    renumbered[6] = 4  # iConfiguration is configfs's, not the function's
    assert raw == renumbered


async def test_strings_follow_the_host_numbering() -> None:
    fake = vendor()
    fake.host.connect()
    with trio.fail_after(TIMEOUT):
        lang_ids = await fake.host.control(get_descriptor(DescriptorType.STRING, 0))
        assert decode_lang_ids(lang_ids) == [0x0409, 0x0407]
        texts = [await read_string(fake, index) for index in (1, 2, 4, 5, 6, 7)]
        assert texts == ["Acme", "Widget", "Default", "Function", "Control", "Data"]
        assert await read_string(fake, 6, lang=0x0407) == "Steuerung"
        assert await read_string(fake, 7, lang=0x0407) == ""  # f_fs pads missing texts
        for index, lang in [(3, 0x0409), (8, 0x0409), (4, 0x0407), (1, 0x0C0A)]:
            with pytest.raises(HostStall):
                await read_string(fake, index, lang)
    assert fake.queued_events == (BIND,)


async def test_unanswered_descriptors_stall() -> None:
    fake = vendor()
    fake.host.connect()
    with trio.fail_after(TIMEOUT):
        for kind, index in [(DescriptorType.CONFIGURATION, 1), (DescriptorType.BOS, 0)]:
            with pytest.raises(HostStall):
                await fake.host.control(get_descriptor(kind, index))
    assert fake.queued_events == (BIND,)


async def test_address_configuration_and_status() -> None:
    fake = vendor()
    fake.host.connect()
    control = fake.host.control
    with trio.fail_after(TIMEOUT):
        await control(SetupPacket(RequestType.OUT, Request.SET_ADDRESS, 7))
        get_config = SetupPacket(RequestType.IN, Request.GET_CONFIGURATION, 0, 0, 1)
        assert await control(get_config) == b"\x00"
        await control(SetupPacket.set_configuration(1))
        assert await control(get_config) == b"\x01"
        status = SetupPacket(RequestType.IN, Request.GET_STATUS, 0, 0, 2)
        assert await control(status) == b"\x01\x00"  # self-powered
        wakeup = FeatureSelector.DEVICE_REMOTE_WAKEUP
        await control(SetupPacket(RequestType.OUT, Request.SET_FEATURE, wakeup))
        assert await control(status) == b"\x03\x00"
        with pytest.raises(HostStall):  # test mode ends only with a reset
            await control(SetupPacket(RequestType.OUT, Request.CLEAR_FEATURE, 2))
        interface = RequestType.IN | RequestType.INTERFACE
        get_interface = SetupPacket(interface, Request.GET_INTERFACE, 0, 1, 1)
        assert await control(get_interface) == b"\x00"
        assert await control(SetupPacket(interface, Request.GET_STATUS, 0, 1, 2)) == bytes(2)
        with pytest.raises(HostStall):
            await control(SetupPacket(interface, Request.GET_INTERFACE, 0, 2, 1))
    assert fake.host.address == 7
    assert fake.host.remote_wakeup
    assert fake.queued_events == (ENABLE,)  # ENABLE replaced the unread BIND


# -- SET_CONFIGURATION and SET_INTERFACE ------------------------------------------------


async def test_set_configuration_enables_and_zero_disables() -> None:
    fake = vendor()
    fake.host.connect()
    with trio.fail_after(TIMEOUT):
        assert await fake.events() == [BIND]
        assert not fake.endpoint(0x85).enabled
        await fake.host.control(SetupPacket.set_configuration(1))
        assert await fake.events() == [ENABLE]
        assert all(ep.enabled for ep in fake.endpoints)
        await fake.host.control(SetupPacket.set_configuration(0))
        assert await fake.events() == [DISABLE]
        assert not any(ep.enabled for ep in fake.endpoints)
        await fake.host.control(SetupPacket.set_configuration(0))  # already unconfigured
        with pytest.raises(HostStall):
            await fake.host.control(SetupPacket.set_configuration(2))
    assert fake.queued_events == ()
    assert fake.host.configuration == 0


async def test_reconfiguring_merges_disable_into_enable() -> None:
    fake = await configured(vendor())
    with trio.fail_after(TIMEOUT):
        await fake.host.control(SetupPacket.set_configuration(1))
        # reset_config queued DISABLE, set_alt ENABLE; __ffs_event_add keeps the last.
        assert await fake.events() == [ENABLE]


async def test_set_interface() -> None:
    fake = await configured(vendor())
    with trio.fail_after(TIMEOUT):
        await fake.host.control(SetupPacket.set_interface(1, 0))
        assert await fake.events() == [ENABLE]  # ffs_func_set_alt queues ENABLE alone
        for interface, alt in [(1, 1), (5, 0)]:
            with pytest.raises(HostStall):
                await fake.host.control(SetupPacket.set_interface(interface, alt))
        await fake.host.control(SetupPacket.set_configuration(0))
        await fake.events()
        with pytest.raises(HostStall):
            await fake.host.control(SetupPacket.set_interface(0, 0))
    assert fake.queued_events == ()


async def test_set_interface_shuts_down_io_in_flight() -> None:
    fake = await storage()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            read = Call(nursery, lambda: fake.endpoint(0x02).read(512))
            await trio.testing.wait_all_tasks_blocked()
            await fake.host.control(SetupPacket.set_interface(0, 0))
            with pytest.raises(EndpointShutdown):
                await read.result()
            # The endpoint is enabled again: new I/O goes through.
            read = Call(nursery, lambda: fake.endpoint(0x02).read(512))
            await fake.host.transfer_out(0x02, b"after")
            assert await read.result() == b"after"


# -- requests forwarded to the function as SETUP events --------------------------------


async def test_interface_request_gets_the_blob_index() -> None:
    fake = await configured(vendor())
    setup = SetupPacket(IN_CLASS_INTERFACE, 0x81, 0x0100, 0x0701, 4)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            call = Call(nursery, lambda: fake.host.control(setup))
            [event] = await fake.events()
            await fake.reply(b"abcdef")
            assert await call.result() == b"abcd"  # cut to wLength
    assert event.type == Ep0EventType.SETUP
    # f_fs replaces the whole wIndex: the entity id in the high byte is lost.
    assert event.setup == SetupPacket(IN_CLASS_INTERFACE, 0x81, 0x0100, 0x0001, 4)
    assert fake.ep0_remap.setup_to_remote(event.setup).w_index == 3


async def test_hid_report_descriptor_is_forwarded() -> None:
    fake = FakeGadget(snapshot_of(keyboard()))
    fake.host.connect()
    assert fake.queued_events == (BIND,)
    setup = SetupPacket.get_descriptor(
        DescriptorType.HID_REPORT, 0, 0x3F, recipient=RequestType.INTERFACE
    )
    with trio.fail_after(TIMEOUT):
        await fake.events()
        async with trio.open_nursery() as nursery:
            call = Call(nursery, lambda: fake.host.control(setup))
            # Before SET_CONFIGURATION: FUNCTIONFS_CONFIG0_SETUP still forwards it.
            assert await fake.events() == [Ep0Event(Ep0EventType.SETUP, setup)]
            await fake.reply(KEYBOARD_REPORT)
            assert await call.result() == KEYBOARD_REPORT


async def test_endpoint_request_keeps_the_virtual_address() -> None:
    fake = await configured(vendor())
    setup = SetupPacket(OUT_VENDOR_ENDPOINT, 0x42, 0, 0x85, 0)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            call = Call(nursery, lambda: fake.host.control(setup))
            assert await fake.events() == [Ep0Event(Ep0EventType.SETUP, setup)]
            assert await fake.receive() == b""  # no data stage: acknowledged
            assert await call.result() == b""


async def test_device_request_is_forwarded_as_it_is() -> None:
    fake = await configured(vendor())
    setup = SetupPacket(IN_VENDOR_DEVICE, 0x01, 0xBEEF, 0x1234, 8)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            call = Call(nursery, lambda: fake.host.control(setup))
            assert await fake.events() == [Ep0Event(Ep0EventType.SETUP, setup)]
            await fake.reply(b"\x01\x02")
            assert await call.result() == b"\x01\x02"
    assert fake.host.setups_seen[-1] == setup


async def test_unclaimed_interface_or_endpoint_stalls_without_event() -> None:
    fake = await configured(vendor())
    with trio.fail_after(TIMEOUT):
        with pytest.raises(HostStall):
            await fake.host.control(SetupPacket(IN_CLASS_INTERFACE, 1, 0, 2, 1))
        with pytest.raises(HostStall):
            await fake.host.control(SetupPacket(OUT_VENDOR_ENDPOINT, 1, 0, 0x86, 0))
    assert fake.queued_events == ()


async def test_out_request_data_reaches_receive() -> None:
    fake = await configured(vendor())
    setup = SetupPacket(OUT_CLASS_INTERFACE, 0x09, 0x0200, 0, 3)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            call = Call(nursery, lambda: fake.host.control(setup, b"\x01\x02\x03"))
            await fake.events()
            assert await fake.receive() == b"\x01\x02\x03"
            assert await call.result() == b""


async def test_stall() -> None:
    fake = await configured(vendor())
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            call = Call(nursery, lambda: fake.host.control(SetupPacket(IN_VENDOR_DEVICE, 3)))
            await fake.events()
            await fake.stall()
            with pytest.raises(HostStall):
                await call.result()
        with pytest.raises(GadgetError):
            await fake.stall()  # answered already: nothing pending


@pytest.mark.parametrize("direction", ["in", "out"])
async def test_wrong_direction_stalls(direction: str) -> None:
    fake = await configured(vendor())
    if direction == "in":
        setup, data = SetupPacket(IN_VENDOR_DEVICE, 1, 0, 0, 4), b""
    else:
        setup, data = SetupPacket(OUT_CLASS_INTERFACE, 1, 0, 0, 2), b"ab"
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            call = Call(nursery, lambda: fake.host.control(setup, data))
            await fake.events()
            wrong: Callable[[], Awaitable[object]] = (
                fake.receive if direction == "in" else functools.partial(fake.reply, b"xy")
            )
            with pytest.raises(GadgetError, match="stalls"):
                await wrong()
            with pytest.raises(HostStall):
                await call.result()


async def test_answer_without_setup() -> None:
    fake = await configured(vendor())
    with trio.fail_after(TIMEOUT):
        with pytest.raises(GadgetError, match="no SETUP"):
            await fake.reply(b"x")
        with pytest.raises(GadgetError, match="no SETUP"):
            await fake.receive()


async def test_new_setup_cancels_the_pending_one() -> None:
    fake = await configured(vendor())
    first = SetupPacket(IN_VENDOR_DEVICE, 1, 0, 0, 4)
    second = SetupPacket(IN_VENDOR_DEVICE, 2, 0, 0, 4)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            old = Call(nursery, lambda: fake.host.control(first))
            assert await fake.events() == [Ep0Event(Ep0EventType.SETUP, first)]
            with pytest.raises(GadgetError, match="pending"):
                await fake.events()  # on the real ep0 this read would be the data stage
            new = Call(nursery, lambda: fake.host.control(second))
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(HostError, match="superseded"):
                await old.result()
            with pytest.raises(GadgetError, match="cancelled"):
                await fake.reply(b"old!")  # -EIDRM
            assert await fake.events() == [Ep0Event(Ep0EventType.SETUP, second)]
            await fake.reply(b"new!")
            assert await new.result() == b"new!"


async def test_disconnect_aborts_the_control_transfer() -> None:
    fake = await configured(vendor())
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            call = Call(nursery, lambda: fake.host.control(SetupPacket(IN_VENDOR_DEVICE, 1)))
            await trio.testing.wait_all_tasks_blocked()
            fake.host.disconnect()
            with pytest.raises(HostError, match="disconnected"):
                await call.result()
    assert fake.queued_events == (DISABLE,)  # the unread SETUP was dropped


async def test_event_cancels_the_pending_setup() -> None:
    fake = await configured(vendor())
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            call = Call(nursery, lambda: fake.host.control(SetupPacket(IN_VENDOR_DEVICE, 1)))
            await fake.events()
            fake.host.suspend()
            with pytest.raises(HostError, match="SUSPEND"):
                await call.result()
            with pytest.raises(GadgetError, match="cancelled"):
                await fake.events()  # f_fs answers the next ep0 read -EIDRM once
            assert await fake.events() == [Ep0Event(Ep0EventType.SUSPEND)]


async def test_host_times_out(autojump_clock: trio.testing.MockClock) -> None:
    fake = await configured(vendor())
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            call = Call(nursery, lambda: fake.host.control(SetupPacket(IN_VENDOR_DEVICE, 1)))
            await fake.events()
            start = trio.current_time()
            with pytest.raises(HostTimeout):
                await call.result()
    assert trio.current_time() - start == pytest.approx(5.0)
    await fake.reply(b"late")  # answers into the void, as a late ep0 write would


async def test_host_refuses_bad_requests() -> None:
    fake = vendor()
    with trio.fail_after(TIMEOUT):
        with pytest.raises(HostError, match="not attached"):
            await fake.host.control(SetupPacket.set_configuration(1))
        fake.host.connect()
        with pytest.raises(ValueError, match="wLength"):
            await fake.host.control(SetupPacket(OUT_CLASS_INTERFACE, 1, 0, 0, 2), b"a")
        with pytest.raises(HostError, match="no IN endpoint"):
            await fake.host.transfer_in(0x04, 512)


# -- data endpoints ----------------------------------------------------------------------


async def test_in_short_packet_ends_the_transfer() -> None:
    fake = await storage()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            write = Call(nursery, lambda: fake.endpoint(0x81).write(b"x" * 600))
            await trio.testing.wait_all_tasks_blocked()
            assert not write.done  # nothing taken yet
            assert await fake.host.transfer_in(0x81, 4096) == b"x" * 600
            await write.result()


async def test_in_full_packets_continue_into_the_next_write() -> None:
    fake = await storage()
    endpoint = fake.endpoint(0x81)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            transfer = Call(nursery, lambda: fake.host.transfer_in(0x81, 4096))
            await endpoint.write(b"a" * 512)  # one full packet: the transfer goes on
            assert not transfer.done
            await endpoint.write(b"b" * 100)
            assert await transfer.result() == b"a" * 512 + b"b" * 100


async def test_in_zero_length_packet() -> None:
    fake = await storage()
    endpoint = fake.endpoint(0x81)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            transfer = Call(nursery, lambda: fake.host.transfer_in(0x81, 4096))
            await endpoint.write(b"a" * 1024)
            await endpoint.write(b"")
            assert await transfer.result() == b"a" * 1024
            transfer = Call(nursery, lambda: fake.host.transfer_in(0x81, 4096))
            await endpoint.write(b"")
            assert await transfer.result() == b""


async def test_in_transfer_ends_at_its_length() -> None:
    fake = await storage()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            write = Call(nursery, lambda: fake.endpoint(0x81).write(bytes(range(256)) * 4))
            assert await fake.host.transfer_in(0x81, 512) == bytes(range(256)) * 2
            assert not write.done
            assert await fake.host.transfer_in(0x81, 512) == bytes(range(256)) * 2
            await write.result()


async def test_in_babble() -> None:
    fake = await storage()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            write = Call(nursery, lambda: fake.endpoint(0x81).write(b"z" * 512))
            with pytest.raises(HostBabble):
                await fake.host.transfer_in(0x81, 100)
            await write.result()


async def test_out_read_longer_than_the_transfer() -> None:
    fake = await storage()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            read = Call(nursery, lambda: fake.endpoint(0x02).read(4096))
            await fake.host.transfer_out(0x02, b"q" * 1000)  # 512 + a short 488
            assert await read.result() == b"q" * 1000


async def test_out_read_shorter_than_the_transfer() -> None:
    fake = await storage()
    endpoint = fake.endpoint(0x02)
    data = bytes(range(200)) * 5
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            transfer = Call(nursery, lambda: fake.host.transfer_out(0x02, data))
            # read(100) asks for one packet (rounded up to 512) and keeps the rest.
            assert await endpoint.read(100) == data[:100]
            assert await endpoint.read(1000) == data[100:512]  # the buffer alone
            assert not transfer.done
            assert await endpoint.read(1000) == data[512:]
            await transfer.result()


async def test_out_zero_length_packets() -> None:
    fake = await storage()
    endpoint = fake.endpoint(0x02)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            read = Call(nursery, lambda: endpoint.read(512))
            await fake.host.transfer_out(0x02, b"")
            assert await read.result() == b""
            read = Call(nursery, lambda: endpoint.read(4096))
            await fake.host.transfer_out(0x02, b"w" * 512, zero_packet=True)
            assert await read.result() == b"w" * 512
            # Without the ZLP the next transfer continues the same read.
            read = Call(nursery, lambda: endpoint.read(4096))
            await fake.host.transfer_out(0x02, b"w" * 512)
            assert not read.done
            await fake.host.transfer_out(0x02, b"v")
            assert await read.result() == b"w" * 512 + b"v"


async def test_io_waits_for_the_function_enabled() -> None:
    fake = FakeGadget(snapshot_of(disk()))
    fake.host.connect()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            write = Call(nursery, lambda: fake.endpoint(0x81).write(b"early"))
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(HostError, match="not enabled"):
                await fake.host.transfer_in(0x81, 512)
            await fake.host.control(SetupPacket.set_configuration(1))
            assert await fake.host.transfer_in(0x81, 512) == b"early"
            await write.result()


@pytest.mark.parametrize("how", ["set_configuration_0", "disconnect"])
async def test_disable_fails_blocked_io(how: str) -> None:
    fake = await storage()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            read = Call(nursery, lambda: fake.endpoint(0x02).read(512))
            write = Call(nursery, lambda: fake.endpoint(0x81).write(b"never taken"))
            await trio.testing.wait_all_tasks_blocked()
            if how == "disconnect":
                fake.host.disconnect()
            else:
                await fake.host.control(SetupPacket.set_configuration(0))
            for call in (read, write):
                with pytest.raises(EndpointShutdown):
                    await call.result()
        assert await fake.events() == [DISABLE]
        fake.host.connect()
        await fake.host.control(SetupPacket.set_configuration(1))
        async with trio.open_nursery() as nursery:
            write = Call(nursery, lambda: fake.endpoint(0x81).write(b"fresh"))
            assert await fake.host.transfer_in(0x81, 512) == b"fresh"  # nothing stale


async def test_disable_drops_buffered_data() -> None:
    fake = await storage()
    endpoint = fake.endpoint(0x02)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            Call(nursery, lambda: fake.host.transfer_out(0x02, b"s" * 512))
            assert await endpoint.read(10) == b"s" * 10  # 502 bytes kept for the next read
        await fake.host.control(SetupPacket.set_configuration(1))
        async with trio.open_nursery() as nursery:
            read = Call(nursery, lambda: endpoint.read(512))
            await fake.host.transfer_out(0x02, b"new")
            assert await read.result() == b"new"


async def test_disable_fails_the_host_transfer() -> None:
    fake = await storage()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            transfer = Call(nursery, lambda: fake.host.transfer_in(0x81, 512))
            await trio.testing.wait_all_tasks_blocked()
            await fake.host.control(SetupPacket.set_configuration(0))
            with pytest.raises(HostError, match="disabled"):
                await transfer.result()


async def test_halt_in_keeps_queued_writes_until_cleared() -> None:
    fake = await storage()
    endpoint = fake.endpoint(0x81)
    endpoint_status = SetupPacket(
        RequestType.IN | RequestType.ENDPOINT, Request.GET_STATUS, 0, 0x81, 2
    )
    with trio.fail_after(TIMEOUT):
        await endpoint.halt()
        assert endpoint.halted
        assert await fake.host.control(endpoint_status) == b"\x01\x00"
        async with trio.open_nursery() as nursery:
            write = Call(nursery, lambda: endpoint.write(b"kept"))
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(HostStall):
                await fake.host.transfer_in(0x81, 512)
            await fake.host.control(SetupPacket.clear_feature_halt(0x81))
            assert not endpoint.halted
            assert await fake.host.control(endpoint_status) == b"\x00\x00"
            assert await fake.host.transfer_in(0x81, 512) == b"kept"
            await write.result()
    assert fake.queued_events == ()  # the UDC handled the halt requests


async def test_halt_out_stalls_the_host_until_cleared() -> None:
    fake = await storage()
    endpoint = fake.endpoint(0x02)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            transfer = Call(nursery, lambda: fake.host.transfer_out(0x02, b"y" * 100))
            await trio.testing.wait_all_tasks_blocked()
            await endpoint.halt()
            with pytest.raises(HostStall):
                await transfer.result()
            read = Call(nursery, lambda: endpoint.read(512))
            with pytest.raises(HostStall):
                await fake.host.transfer_out(0x02, b"z")
            fake.host.clear_halt(0x02)
            await fake.host.transfer_out(0x02, b"after")
            assert await read.result() == b"after"


async def test_host_set_feature_halt() -> None:
    fake = await storage()
    halt = SetupPacket(
        RequestType.ENDPOINT, Request.SET_FEATURE, FeatureSelector.ENDPOINT_HALT, 0x81
    )
    with trio.fail_after(TIMEOUT):
        await fake.host.control(halt)
        assert fake.endpoint(0x81).halted
        with pytest.raises(HostStall):
            await fake.host.transfer_in(0x81, 512)
        fake.host.clear_halt(0x81)
        assert not fake.endpoint(0x81).halted
        with pytest.raises(HostStall):  # no such endpoint
            await fake.host.control(SetupPacket.clear_feature_halt(0x83))


async def test_wrong_direction_io_halts_the_endpoint() -> None:
    fake = await storage()
    with trio.fail_after(TIMEOUT):
        with pytest.raises(GadgetError, match="halted"):
            await fake.endpoint(0x02).write(b"wrong way")
        assert fake.endpoint(0x02).halted
        with pytest.raises(GadgetError, match="halted"):
            await fake.endpoint(0x81).read(512)
        assert fake.endpoint(0x81).halted


# -- bus events --------------------------------------------------------------------------


async def test_suspend_and_resume() -> None:
    fake = await configured(vendor())
    with trio.fail_after(TIMEOUT):
        fake.host.suspend()
        assert await fake.events() == [Ep0Event(Ep0EventType.SUSPEND)]
        fake.host.resume()
        assert await fake.events() == [Ep0Event(Ep0EventType.RESUME)]
        fake.host.suspend()
        fake.host.resume()  # an unread SUSPEND is dropped by the RESUME
        assert await fake.events() == [Ep0Event(Ep0EventType.RESUME)]


async def test_suspend_unconfigured_reaches_no_function() -> None:
    fake = vendor()
    fake.host.connect()
    with trio.fail_after(TIMEOUT):
        assert await fake.events() == [BIND]
    fake.host.suspend()
    fake.host.resume()
    assert fake.queued_events == ()
    assert not fake.host.suspended


async def test_unbind_and_reconnect() -> None:
    fake = await configured(vendor())
    with trio.fail_after(TIMEOUT):
        fake.host.unbind()
        assert await fake.events() == [Ep0Event(Ep0EventType.UNBIND)]  # DISABLE merged
        with pytest.raises(HostError, match="not attached"):
            await fake.host.control(SetupPacket.set_configuration(1))
        fake.host.connect()
        assert await fake.events() == [BIND]
        fake.host.disconnect()
        fake.host.connect()  # still bound: no second BIND
    assert fake.queued_events == ()


async def test_events_wait_for_an_event() -> None:
    fake = vendor()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            events = Call(nursery, fake.events)
            await trio.testing.wait_all_tasks_blocked()
            assert not events.done
            fake.host.connect()
            assert await events.result() == [BIND]
