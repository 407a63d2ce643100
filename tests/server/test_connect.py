"""The "connect" direction: the device side offers a device (OP_REQ_EXPORT), the gadget side
accepts it (``accept_exported_device``) and submits URBs over the same connection."""

from __future__ import annotations

import functools

import pytest
import trio
import trio.testing

from tests.protocol.helpers import SAMPLE_DEVICE
from tests.server.harness import FAST, bed, disk
from tests.usb.vectors import MASS_STORAGE_DEVICE
from usbip_gadget._errors import ImportRefused, RemoteProtocolError, TransportError, UsbipTimeout
from usbip_gadget.client import accept_exported_device, refuse_export
from usbip_gadget.protocol import (
    Connection,
    DevlistRequest,
    Direction,
    ExportReply,
    ExportRequest,
    OpStatus,
    Role,
    UnexportReply,
    UnexportRequest,
)
from usbip_gadget.server import ExportError
from usbip_gadget.server._connect import connect
from usbip_gadget.testing import FakeSource
from usbip_gadget.usb import DescriptorType, SetupPacket

pytestmark = pytest.mark.timeout(30)


async def test_an_offered_device_is_accepted_and_answers_urbs() -> None:
    gadget_end, device_end = trio.testing.memory_stream_pair()
    async with bed(disk()) as test_bed:
        exporting = trio.Event()

        async def offer() -> None:
            await test_bed.server.export_to(device_end, "1-1", "gadget")
            exporting.set()

        test_bed.nursery.start_soon(offer)
        with trio.fail_after(10):
            async with accept_exported_device(gadget_end, timeout=5) as remote:
                assert remote.device.busid == "1-1"
                assert test_bed.lines("exported 1-1")
                setup = SetupPacket.get_descriptor(DescriptorType.DEVICE, 0, 18)
                assert await remote.control(setup, timeout=5) == MASS_STORAGE_DEVICE
                assert test_bed.server.claimed == {"1-1"}
            await gadget_end.aclose()
            await exporting.wait()
    assert test_bed.lines("withdrew 1-1")
    assert test_bed.server.claimed == frozenset()


async def test_a_refused_offer_releases_the_device() -> None:
    gadget_end, device_end = trio.testing.memory_stream_pair()
    async with bed(disk()) as test_bed:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    functools.partial(refuse_export, gadget_end, OpStatus.DEV_BUSY, timeout=5)
                )
                with pytest.raises(ImportRefused, match=r"refused 1-1 .*device busy") as refused:
                    await test_bed.server.export_to(device_end, "1-1", "gadget")
                assert refused.value.status == OpStatus.DEV_BUSY
        assert test_bed.server.claimed == frozenset()


async def test_an_unknown_device_is_not_offered() -> None:
    async with bed(disk()) as test_bed:
        _gadget_end, device_end = trio.testing.memory_stream_pair()
        with pytest.raises(ExportError, match="cannot offer 9-9"):
            await test_bed.server.export_to(device_end, "9-9", "gadget")


@pytest.mark.parametrize(
    ("first", "error"),
    [
        (DevlistRequest(), RemoteProtocolError),
        (None, TransportError),  # the device side closes without offering anything
    ],
)
async def test_the_gadget_side_accepts_only_an_export(first: object, error: type) -> None:
    gadget_end, device_end = trio.testing.memory_stream_pair()
    if first is None:
        await device_end.aclose()
    else:
        conn = Connection(Role.HOST)  # encodes what a misbehaving peer would send
        await device_end.send_all(conn.send(first))  # type: ignore[arg-type]
    with trio.fail_after(5), pytest.raises(error):
        async with accept_exported_device(gadget_end, timeout=5):
            pytest.fail("accepted")


async def test_no_offer_in_time_is_a_timeout(autojump_clock: trio.abc.Clock) -> None:
    gadget_end, _device_end = trio.testing.memory_stream_pair()
    with pytest.raises(UsbipTimeout, match="no device offered within 3 s"):
        async with accept_exported_device(gadget_end, timeout=3):
            pytest.fail("accepted")


async def test_unexport_ends_the_accepted_device() -> None:
    gadget_end, device_end = trio.testing.memory_stream_pair()
    device = Connection(Role.DEVICE)
    await device_end.send_all(device.send(ExportRequest(SAMPLE_DEVICE)))
    with trio.fail_after(5):
        async with accept_exported_device(gadget_end, timeout=5) as remote:
            device.receive_data(await device_end.receive_some(4096))
            assert device.next_event() == ExportReply()
            await device_end.send_all(device.send(UnexportRequest(remote.device)))
            await remote.closed.wait()
            assert isinstance(remote.failure, TransportError)
            device.receive_data(await device_end.receive_some(4096))
            assert device.next_event() == UnexportReply()
            with pytest.raises(TransportError):
                await remote.submit(1, Direction.IN, 512)


async def test_connect_offers_again_after_the_peer_goes() -> None:
    """``connect`` against a listener that accepts, reads the device descriptor and hangs up."""
    descriptors: list[bytes] = []
    three = trio.Event()

    async def gadget_side(stream: trio.SocketStream) -> None:
        async with stream, accept_exported_device(stream, timeout=5) as remote:
            setup = SetupPacket.get_descriptor(DescriptorType.DEVICE, 0, 18)
            descriptors.append(await remote.control(setup, timeout=5))
            if len(descriptors) == 3:
                three.set()

    log: list[str] = []
    source = FakeSource([disk()])
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            serve = functools.partial(trio.serve_tcp, gadget_side, 0, host="127.0.0.1")
            listeners = await nursery.start(serve)
            port = listeners[0].socket.getsockname()[1]
            offer = functools.partial(
                connect, source, "1-1", "127.0.0.1", port,
                options=FAST, log=log.append, first_retry=0.05,
            )  # fmt: skip
            nursery.start_soon(offer)
            await three.wait()
            nursery.cancel_scope.cancel()
    assert descriptors == [MASS_STORAGE_DEVICE] * 3
    assert sum("exported 1-1" in line for line in log) >= 3
    assert any("offering 1-1 to 127.0.0.1" in line for line in log)


async def test_connect_refuses_a_device_that_is_not_there() -> None:
    with trio.fail_after(5), pytest.raises(ExportError, match="no local USB device at 9-9"):
        await connect(FakeSource([disk()]), "9-9", "127.0.0.1", 1)
