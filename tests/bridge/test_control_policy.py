"""The control policy through a real ``Bridge``: requests from the host that would reset or
reprogram the remote device are stalled and never sent; the device's own language passes."""

from __future__ import annotations

import pytest
import trio

from tests.bridge.test_bridge import bridged, vendor_remote
from tests.server.harness import HUB_CONFIG, HUB_DEVICE
from usbip_gadget.testing import FakeRemote, HostStall
from usbip_gadget.usb import DeviceSnapshot, Request, RequestType, SetupPacket, Speed

pytestmark = pytest.mark.timeout(30)

TIMEOUT = 10
PORT_RESET = 4  # USB 2.0 §11.24.2, Table 11-17
OUT_CLASS_OTHER = RequestType.OUT | RequestType.CLASS | RequestType.OTHER
IN_CLASS_OTHER = RequestType.IN | RequestType.CLASS | RequestType.OTHER
OUT_CLASS_DEVICE = RequestType.OUT | RequestType.CLASS | RequestType.DEVICE
OUT_CLASS_INTERFACE = RequestType.OUT | RequestType.CLASS | RequestType.INTERFACE
IN_CLASS_INTERFACE = RequestType.IN | RequestType.CLASS | RequestType.INTERFACE
OUT_VENDOR_DEVICE = RequestType.OUT | RequestType.VENDOR | RequestType.DEVICE
SET_PORT_RESET = SetupPacket(OUT_CLASS_OTHER, Request.SET_FEATURE, PORT_RESET, 1, 0)

# A device with a vendor interface 2 and a DFU runtime interface 4 (the host sees 0 and 1).
DFU_DEVICE = bytes.fromhex("12 01 00 02 00 00 00 40 83 04 11 df 00 01 01 02 00 01")
DFU_CONFIG = bytes.fromhex(
    "09 02 29 00 02 01 00 80 32"
    "09 04 02 00 02 ff 00 00 00"  # interface 2: vendor
    "07 05 81 02 40 00 00"
    "07 05 02 02 40 00 00"
    "09 04 04 00 00 fe 01 01 00"  # interface 4: DFU runtime (fe:01:01)
)
DFU_DETACH, DFU_DNLOAD = 0, 1  # DFU 1.1 §3, Table 3.2


def answering(snapshot: DeviceSnapshot) -> FakeRemote:
    """A remote that acknowledges every request it gets (and answers IN ones with 4 bytes)."""
    remote = FakeRemote(snapshot)
    remote.on_control = lambda setup, data: b"\x01\x02\x03\x04" if setup.is_in else b""
    return remote


def reached(remote: FakeRemote, setup: SetupPacket) -> bool:
    return any(seen == setup for seen, _ in remote.controls)


HUB_REQUEST = "a hub request (such as a port reset) to a device that is not a hub"


@pytest.mark.parametrize(
    ("setup", "data", "reason"),
    [
        (SET_PORT_RESET, b"", HUB_REQUEST),
        (SetupPacket(OUT_CLASS_OTHER, Request.CLEAR_FEATURE, 8, 2, 0), b"", HUB_REQUEST),
        (SetupPacket(IN_CLASS_OTHER, Request.GET_STATUS, 0, 1, 4), b"", HUB_REQUEST),
        (SetupPacket(OUT_CLASS_DEVICE, Request.SET_FEATURE, 0, 0, 0), b"", HUB_REQUEST),
        (
            SetupPacket(RequestType.OUT, Request.SET_DESCRIPTOR, 0x0100, 0, 18),
            bytes(18),
            "SET_DESCRIPTOR would rewrite the device's descriptors",
        ),
    ],
    ids=["port reset", "port power off", "port status", "hub feature", "set descriptor"],
)
async def test_a_request_that_resets_or_reprograms_is_stalled_and_never_sent(
    setup: SetupPacket, data: bytes, reason: str
) -> None:
    remote = answering(vendor_remote().snapshot)
    vendor = SetupPacket(OUT_VENDOR_DEVICE, 0x01, 0, 0, 0)
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            with pytest.raises(HostStall):
                await rig.host.control(setup, data)
            # ep0 goes on: the next request is forwarded.
            assert await rig.host.control(vendor) == b""
    assert not reached(remote, setup)
    assert reached(remote, vendor)
    refused = [line for line in rig.log if line.startswith("refused control request")]
    assert refused == [f"refused control request {setup.pack().hex()} from the host: {reason}"]


async def test_a_hub_gets_its_port_reset() -> None:
    remote = answering(DeviceSnapshot.from_raw("1-3", Speed.HIGH, HUB_DEVICE, (HUB_CONFIG,)))
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            await rig.host.control(SET_PORT_RESET)
    assert reached(remote, SET_PORT_RESET)
    assert not [line for line in rig.log if line.startswith("refused")]


@pytest.mark.parametrize(
    ("request_type", "b_request"),
    [
        (OUT_VENDOR_DEVICE, Request.CLEAR_FEATURE),
        (OUT_VENDOR_DEVICE, Request.SET_FEATURE),
        (OUT_VENDOR_DEVICE, Request.SET_DESCRIPTOR),
        (OUT_CLASS_DEVICE, 0x00),  # a Bluetooth HCI command
    ],
    ids=["vendor 1", "vendor 3", "vendor 7", "bluetooth hci"],
)
async def test_the_devices_own_requests_pass_whatever_their_number(
    request_type: int, b_request: int
) -> None:
    remote = answering(vendor_remote().snapshot)
    setup = SetupPacket(request_type, b_request, 0x0100, 0, 4)
    with trio.fail_after(TIMEOUT):
        async with bridged(remote) as rig:
            await rig.host.control(setup, b"\x00\x01\x02\x03")
            await remote.wait_until(lambda: reached(remote, setup))
    assert (setup, b"\x00\x01\x02\x03") in remote.controls


@pytest.mark.parametrize("allow_dfu", [False, True], ids=["refused", "--allow-dfu"])
async def test_dfu_requests_pass_only_when_allowed(allow_dfu: bool) -> None:
    remote = answering(DeviceSnapshot.from_raw("1-4", Speed.HIGH, DFU_DEVICE, (DFU_CONFIG,)))
    detach = SetupPacket(OUT_CLASS_INTERFACE, DFU_DETACH, 1000, 1, 0)  # the host's numbering
    download = SetupPacket(OUT_CLASS_INTERFACE, DFU_DNLOAD, 0, 1, 16)
    vendor_class = SetupPacket(IN_CLASS_INTERFACE, 0x01, 0, 0, 4)  # to the vendor interface
    with trio.fail_after(TIMEOUT):
        async with bridged(remote, allow_dfu=allow_dfu) as rig:
            for setup, data in ((detach, b""), (download, bytes(range(16)))):
                if allow_dfu:
                    await rig.host.control(setup, data)
                else:
                    with pytest.raises(HostStall):
                        await rig.host.control(setup, data)
            assert await rig.host.control(vendor_class) == b"\x01\x02\x03\x04"
    # The remote device sees its own interface numbers: DFU is interface 4, vendor 2.
    assert reached(remote, SetupPacket(OUT_CLASS_INTERFACE, DFU_DETACH, 1000, 4, 0)) is allow_dfu
    assert reached(remote, SetupPacket(OUT_CLASS_INTERFACE, DFU_DNLOAD, 0, 4, 16)) is allow_dfu
    assert reached(remote, SetupPacket(IN_CLASS_INTERFACE, 0x01, 0, 2, 4))
    refused = [line for line in rig.log if line.startswith("refused")]
    assert len(refused) == (0 if allow_dfu else 2)
    assert all(line.endswith("(--allow-dfu lets it through)") for line in refused)
