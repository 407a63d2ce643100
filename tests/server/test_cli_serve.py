"""``usbip-gadget serve`` on the command line: usage errors, no match, signals."""

from __future__ import annotations

import signal
from functools import partial

import pytest
import trio

from tests.server.harness import RawClient, disk
from usbip_gadget.cli import main
from usbip_gadget.cli._commands import _serve_until_signal
from usbip_gadget.cli._parser import build_parser
from usbip_gadget.server import Selection
from usbip_gadget.testing import FakeSource

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve"], "serve: nothing is exported unless selected: use --allow or --busid"),
        (["serve", "--port", "3240"], "serve: nothing is exported unless selected"),
        (["serve", "--allow", "1d6b"], "argument --allow: '1d6b' is not VID:PID"),
        (["serve", "--allow", "12345:1"], "argument --allow: '12345:1' is not VID:PID"),
        (["serve", "--busid", "usb1"], "argument --busid: 'usb1' is not a bus ID"),
        (["serve", "--busid", "1-1", "--port", "70000"], "argument --port: '70000' is not"),
        (["serve", "--busid", "1-1", "--port", "0"], "argument --port: '0' is not a TCP port"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usbip-gadget: {message}")
    assert err.count("\n") == 1


def test_defaults_are_loopback_and_the_usbip_port() -> None:
    args = build_parser().parse_args(["serve", "--allow", "1d6b:104", "--allow", "0781:5567"])
    assert (args.bind, args.port) == ("127.0.0.1", 3240)
    assert args.allow == [(0x1D6B, 0x0104), (0x0781, 0x5567)]


def test_no_matching_device_is_one_line_with_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    # The real pyusb source: whatever this machine has, ffff:fffe is not among it (and
    # without libusb or usbfs the error is one line too).
    assert main(["serve", "--allow", "ffff:fffe", "--port", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("usbip-gadget: ")
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_releases_the_devices_and_returns(
    signum: signal.Signals, capsys: pytest.CaptureFixture[str]
) -> None:
    d = disk()

    async def run() -> None:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                source, selection = FakeSource([d]), Selection.of(busids=["1-1"])
                serving = partial(_serve_until_signal, source, selection, "127.0.0.1", 0)
                port = await nursery.start(serving)
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await RawClient(stream).import_("1-1")
                assert d.claimed
                signal.raise_signal(signum)
            await stream.aclose()  # only now: the import ends because of the signal

    trio.run(run)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("usbip-gadget: listening on 127.0.0.1:")
    assert lines[0].endswith(", exporting 1-1 (0781:5567)")
    assert lines[1].startswith("usbip-gadget: imported 1-1 (0781:5567) by 127.0.0.1:")
    assert lines[2] == f"usbip-gadget: {signum.name}: stopping"
    assert lines[3].startswith("usbip-gadget: released 1-1 (0781:5567) from 127.0.0.1:")
    assert lines[3].endswith(": the server stopped")
    assert len(lines) == 4
    assert not d.claimed
    assert d.drivers == {0: "usb-storage"}
