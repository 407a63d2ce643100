"""The --tls options and WebSocket URLs on the command line: usage errors exit 2 in one line;
``list`` and ``describe`` against ``serve`` over mutual TLS, and their refusals, exit 0 or 1."""

from __future__ import annotations

import re
from functools import partial

import pytest
import trio

from tests.net.beds import LOOPBACK, served
from tests.net.certs import Certs
from usbip_gadget.cli import main
from usbip_gadget.cli._parser import build_parser

pytestmark = pytest.mark.timeout(30)

CERT, KEY, CA = "--tls-cert", "--tls-key", "--tls-ca"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["list", "h", CERT, "c"], "--tls-cert, --tls-key and --tls-ca go together: missing "
         "--tls-key, --tls-ca"),
        (["describe", "h", "1-1", CA, "a"], "--tls-cert, --tls-key and --tls-ca go together"),
        (["plan", "h", "1-1", KEY, "k", CA, "a"], "--tls-cert, --tls-key and --tls-ca go"),
        (["attach", "h", "1-1", CERT, "c", KEY, "k"], "--tls-cert, --tls-key and --tls-ca go"),
        (["serve", "--busid", "1-1", CERT, "c"], "--tls-cert, --tls-key and --tls-ca go"),
        (["listen", CA, "a"], "--tls-cert, --tls-key and --tls-ca go together"),
        (["connect", "h", "1-1", KEY, "k"], "--tls-cert, --tls-key and --tls-ca go together"),
        (["list", "h", "--tls-peer-name", "n"], "--tls-peer-name needs --tls-cert, --tls-key"),
        (["connect", "wss://h/usbip", "1-1"], "wss:// needs --tls-cert, --tls-key and --tls-ca"),
        (["connect", "ws://h/usbip", "1-1", CERT, "c", KEY, "k", CA, "a"], "ws:// is plain: use"),
        (["listen", "--ws", "usbip"], "argument --ws: 'usbip' is not a URL path like /usbip"),
        (["serve", "--busid", "1-1", "--tls-peer-name", "n"], "unrecognized arguments"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line_with_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usbip-gadget: {message}")
    assert err.count("\n") == 1


def test_plain_tcp_is_the_default() -> None:
    for argv in (["list", "h"], ["serve"], ["listen"], ["connect", "h", "1-1"]):
        args = build_parser().parse_args(argv)
        assert (args.tls_cert, args.tls_key, args.tls_ca) == (None, None, None)
    assert build_parser().parse_args(["listen"]).ws is None


def test_an_unreadable_certificate_file_is_one_line_with_exit_1(
    certs: Certs, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(certs.folder / "missing.pem")
    argv = ["list", "127.0.0.1:1", *certs.args("client")[:4], CA, missing]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"usbip-gadget: cannot load the CA certificate {missing}: No such file")
    assert err.count("\n") == 1
    folder = certs.folder
    mismatched = [CERT, str(folder / "client.crt"), KEY, str(folder / "server.key")]
    assert main(["list", "127.0.0.1:1", *mismatched, CA, str(folder / "ca.pem")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("usbip-gadget: cannot load the certificate ")
    assert err.count("\n") == 1


async def test_list_over_mutual_tls(certs: Certs, capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(20):
        async with served(certs) as bed:
            argv = ["list", f"{LOOPBACK}:{bed.port}", *certs.args("client")]
            assert await trio.to_thread.run_sync(partial(main, argv)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["1-1        0781:5567  high   Disk"]


@pytest.mark.parametrize(
    ("command", "who", "ca", "reason"),
    [
        (["list"], "stranger", "ca", "the peer closed the connection"),
        (["describe"], "client", "other-ca", "certificate verify failed: "),
        (["plan"], "client", "other-ca", "certificate verify failed: "),
    ],
)
async def test_a_refused_handshake_is_one_line_with_exit_1(
    certs: Certs,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    who: str,
    ca: str,
    reason: str,
) -> None:
    with trio.fail_after(20):
        async with served(certs) as bed:
            busid = [] if command == ["list"] else ["1-1"]
            argv = [*command, f"{LOOPBACK}:{bed.port}", *busid, *certs.args(who, ca)]
            assert await trio.to_thread.run_sync(partial(main, argv)) == 1
            assert bed.untouched()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.match(
        rf"usbip-gadget: TLS handshake with 127\.0\.0\.1:{bed.port} failed: {reason}",
        captured.err,
    )
    assert captured.err.count("\n") == 1
