"""Enumeration and listing end in bounded time, and a device without a configuration is one
line: against scripted servers in memory and, for the command line, over TCP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import trio
import trio.testing

from tests.client.fakes import FakeServer, FakeUsbDevice, keyboard
from tests.client.test_client import imported
from usbip_gadget import RemoteProtocolError, UsbipTimeout
from usbip_gadget.bridge import RETRYABLE
from usbip_gadget.cli import main
from usbip_gadget.client import enumerate_device
from usbip_gadget.protocol import CmdSubmit

pytestmark = pytest.mark.timeout(30)


class SlowServer(FakeServer):
    """Answers each control request ``delay`` seconds late (just inside the client's timeout)."""

    delay = 9.0

    async def _submit(self, cmd: CmdSubmit) -> None:
        await trio.sleep(self.delay)
        await super()._submit(cmd)


def chatty_keyboard() -> FakeUsbDevice:
    """A keyboard with its three strings in 126 languages: 379 string requests."""
    device = keyboard()
    names = {1: "Acme", 2: "Keyboard", 3: "K-0001"}
    device.strings = {0x0400 + lang: dict(names) for lang in range(126)}
    return device


def configless() -> FakeUsbDevice:
    """A device whose descriptor says bNumConfigurations 0."""
    device = keyboard()
    device.device_raw = device.device_raw[:17] + b"\x00"
    device.busid = "1-4"
    return device


async def test_enumeration_has_one_deadline_for_all_its_requests(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with imported(SlowServer([chatty_keyboard()])) as remote:
        start = trio.current_time()
        with pytest.raises(UsbipTimeout, match="enumerating 1-1 took longer than 60 s"):
            await enumerate_device(remote, timeout=10, deadline=60)
        # Plus the unlink of the request in progress, which waits its turn on this server.
        assert 60 <= trio.current_time() - start <= 62


async def test_a_device_without_a_configuration_is_a_retryable_protocol_error() -> None:
    async with imported(FakeServer([configless()]), "1-4") as remote:
        with pytest.raises(RemoteProtocolError) as info:
            await enumerate_device(remote)
    assert info.value.one_line() == "1-4 reports no configuration (bNumConfigurations 0)"
    assert isinstance(info.value, RETRYABLE)  # attach --reconnect tries again


@contextmanager
def tcp_server(make: Callable[[], FakeServer]) -> Iterator[int]:
    """A server made by ``make`` for each connection, on 127.0.0.1 in its own thread."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    async def run() -> None:
        trio_listener = trio.SocketListener(trio.socket.from_stdlib_socket(listener))

        async def handle(stream: trio.SocketStream) -> None:
            await make().serve(stream)
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, handle, [trio_listener])
            await trio.to_thread.run_sync(stop.wait)
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(run,), daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.mark.parametrize("command", ["describe", "plan"])
def test_a_device_without_a_configuration_is_one_line_and_exit_1(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with tcp_server(lambda: FakeServer([configless()])) as port:
        assert main([command, f"127.0.0.1:{port}", "1-4"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("usbip-gadget: 1-4 reports no configuration (bNumConfigurations 0)\n")


def silent_devices(count: int) -> FakeServer:
    """``count`` devices whose control requests are never answered."""
    devices = [keyboard() for _ in range(count)]
    for index, device in enumerate(devices):
        device.busid = f"1-{index + 1}"
    return FakeServer(devices, handler=lambda cmd: None)


def test_list_probes_several_devices_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    # Ten devices that never answer, 0.5 s per request: one at a time would take 5 s.
    with tcp_server(lambda: silent_devices(10)) as port:
        began = time.monotonic()
        assert main(["--timeout", "0.5", "list", f"127.0.0.1:{port}"]) == 0
        took = time.monotonic() - began
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10
    assert all("(no answer: " in line for line in lines)
    assert took < 3.0


def test_list_stops_probing_at_its_deadline(capsys: pytest.CaptureFixture[str]) -> None:
    with tcp_server(lambda: silent_devices(10)) as port:
        argv = ["--timeout", "5", "--enumeration-timeout", "0.5", "list", f"127.0.0.1:{port}"]
        assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [f"1-{i}" for i in range(1, 11)]
    assert all(line.endswith("(no answer within 0.5 s)") for line in lines)
