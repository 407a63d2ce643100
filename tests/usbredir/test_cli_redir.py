"""``usbredir://`` on the command line: usage errors in one line (exit 2), and ``describe``
and ``plan`` against ``serve --usbredir``'s server on in-memory devices over TCP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from functools import partial

import pytest
import trio

from tests.server.harness import FAST, disk, select_all
from usbip_gadget.cli import main
from usbip_gadget.server import serve_redirected
from usbip_gadget.testing import FakeSource


@pytest.fixture
def redir_port() -> Iterator[int]:
    """``serve_redirected`` on one in-memory disk, in its own thread and trio run."""
    device = disk()
    ready: list[int] = []
    started, stop = threading.Event(), threading.Event()

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            serving = partial(
                serve_redirected, FakeSource([device]), select_all(device), host="127.0.0.1",
                port=0, options=FAST,
            )  # fmt: skip
            ready.append(await nursery.start(serving))
            started.set()
            await trio.to_thread.run_sync(stop.wait)
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(run,), daemon=True)
    thread.start()
    assert started.wait(10)
    yield ready[0]
    stop.set()
    thread.join(timeout=10)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["attach", "usbredir://127.0.0.1:4000", "1-1"], "offers one device: no BUSID"),
        (["describe", "usbredir://127.0.0.1:4000", "--serial", "x"], "go with --device"),
        (["list", "usbredir://127.0.0.1:4000"], "has no device list"),
        (
            ["attach", "usbredir://127.0.0.1:4000", "--tls-cert", "c", "--tls-key", "k",
             "--tls-ca", "a"],
            "usbredir:// is plain TCP",
        ),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert words in err
    assert len(err.splitlines()) == 1


def test_a_bad_usbredir_address_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "usbredir://127.0.0.1"]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == "usbip-gadget: invalid usbredir address 'usbredir://127.0.0.1': usbredir://HOST:PORT\n"
    )


def test_describe_over_usbredir_prints_the_device(
    redir_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["describe", f"usbredir://127.0.0.1:{redir_port}", "--json"]) == 0
    snapshot = json.loads(capsys.readouterr().out)
    assert snapshot["device"]["idVendor"] == 0x0781


def test_plan_over_usbredir_checks_the_device_asked_for(
    redir_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"usbredir://127.0.0.1:{redir_port}"
    assert main(["plan", url, "--device", "1234:5678"]) == 1
    assert "offers 0781:5567, not 1234:5678" in capsys.readouterr().err
    assert main(["plan", url, "--device", "0781:5567", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "functionfs"
