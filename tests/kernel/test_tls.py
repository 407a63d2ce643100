"""Mutual TLS and wss on a real kernel: ``serve`` exports the source disk from the first dummy
bus over mutual TLS and ``attach`` replays it on the second; a certificate from another CA
gets nothing; ``connect`` → ``listen`` carries the disk over WebSocket on mutual TLS. The
certificates are made in the guest with trustme (the guest shares the host's venv).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.net.certs import Certs, make_certs

from . import _bridge, _devio, _gadget, _sysfs, _usbip

pytestmark = pytest.mark.kernel

SERVE_PORT = 3270
LISTEN_PORT = 3280
WS_PATH = "/usbip"
START_TIMEOUT_S = _bridge.PLUG_TIMEOUT_S  # a CLI start
PLUG_TIMEOUT_S = _bridge.PLUG_TIMEOUT_S
STOP_TIMEOUT_S = 15.0
DRIVER_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = _bridge.RUN_TIMEOUT_S


@contextlib.contextmanager
def _running_on(argv: Sequence[str], port: int, log: Path) -> Iterator[None]:
    """A CLI server (serve, listen) for the block, once it listens on ``port``."""
    with _bridge.running(argv, log, argv[0]) as process:
        _sysfs.wait_until(
            lambda: process.poll() is not None or _usbip.listening(port),
            START_TIMEOUT_S,
            f"{argv[0]} listening on port {port}",
        )
        assert process.returncode is None, log.read_text(errors="replace")
        yield


def _read_back_equals(disk: Path, content: bytes) -> None:
    assert _devio.disk_size(disk) == len(content)
    mismatch = _devio.first_difference(_devio.read_disk(disk, len(content)), content)
    assert mismatch is None, f"{disk} differs from the source image at byte {mismatch}"


def _refused_in_one_line(done: subprocess.CompletedProcess[str], port: int) -> None:
    assert done.returncode == 1, done
    assert done.stderr.count("\n") == 1, done.stderr
    expected = rf"usbip-gadget: TLS handshake with 127\.0\.0\.1:{port} failed: "
    assert re.match(expected, done.stderr), done.stderr


@pytest.mark.timeout(900)
def test_serve_to_attach_over_mutual_tls(backing_file: tuple[Path, bytes], tmp_path: Path) -> None:
    image, content = backing_file
    certs = make_certs(tmp_path / "certs")
    address = f"{_usbip.LOOPBACK}:{SERVE_PORT}"
    with _gadget.storage_gadget(image) as source:
        vid, pid = source.spec.vid, source.spec.pid
        serve_log = tmp_path / "serve.log"
        argv = ["serve", "--busid", source.busid, "--port", str(SERVE_PORT), *certs.args("server")]
        with _running_on(argv, SERVE_PORT, serve_log):
            _refusals_cost_nothing(certs, source, address, serve_log)
            listed = _bridge.run_cli(["list", address, *certs.args("client")])
            assert listed.returncode == 0, listed
            assert listed.stdout.startswith(f"{source.busid:<10} {vid:04x}:{pid:04x}")
            attach_log = tmp_path / "attach.log"
            extra = certs.args("client")
            with _bridge.bridged(address, source.busid, vid, pid, attach_log, extra) as bridge:
                disk = _sysfs.wait_for(
                    lambda: _sysfs.first_path(_sysfs.block_devices(bridge.device)),
                    DRIVER_TIMEOUT_S,
                    "a disk on the bridge",
                )
                _read_back_equals(disk, content)
            _sysfs.wait_until(  # once after list's probe, once after attach
                lambda: serve_log.read_text().count("released") == 2,
                STOP_TIMEOUT_S,
                "serve releasing the disk",
            )


def _refusals_cost_nothing(certs: Certs, source: _gadget.Gadget, address: str, log: Path) -> None:
    """A foreign certificate, and the kernel's plain usbip: refused in one line each, and the
    source disk never taken from the host's usb-storage."""
    busid = source.busid
    attach = ["attach", address, busid, "--udc", _bridge.BRIDGE_UDC, "--name", "bridge"]
    _refused_in_one_line(_bridge.run_cli([*attach, *certs.args("stranger")]), SERVE_PORT)
    done = subprocess.run(
        ["usbip", "--tcp-port", str(SERVE_PORT), "list", "-r", _usbip.LOOPBACK],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert busid not in done.stdout, done
    _sysfs.wait_until(
        lambda: log.read_text().count("refused: TLS handshake with") == 2,
        STOP_TIMEOUT_S,
        "serve logging both refusals",
    )
    text = log.read_text()
    refusals = [line for line in text.splitlines() if "refused" in line]
    assert len(refusals) == 2, text
    assert all("refused: TLS handshake with 127.0.0.1:" in line for line in refusals), text
    assert "imported" not in text, text
    _sysfs.wait_until(
        lambda: "usb-storage" in _sysfs.interface_drivers(source.device).values(),
        DRIVER_TIMEOUT_S,
        f"usb-storage holding {busid} on the source side",
    )


@pytest.mark.timeout(500)
def test_connect_to_listen_over_wss(backing_file: tuple[Path, bytes], tmp_path: Path) -> None:
    image, content = backing_file
    certs = make_certs(tmp_path / "certs")
    buses = _sysfs.udc_host_buses(_bridge.BRIDGE_UDC)
    with _gadget.storage_gadget(image) as source:
        vid, pid = source.spec.vid, source.spec.pid
        listen_log = tmp_path / "listen.log"
        listen = [
            "listen", "--port", str(LISTEN_PORT), "--ws", WS_PATH, "--udc", _bridge.BRIDGE_UDC,
            "--name", "listen", *certs.args("server"),
        ]  # fmt: skip
        url = f"wss://{_usbip.LOOPBACK}:{LISTEN_PORT}{WS_PATH}"
        with _running_on(listen, LISTEN_PORT, listen_log):
            connect = ["connect", url, source.busid, *certs.args("client")]
            with _bridge.running(connect, tmp_path / "connect.log", "connect"):
                device = _sysfs.wait_for(
                    lambda: _sysfs.configured_device(buses, vid, pid),
                    PLUG_TIMEOUT_S,
                    "the disk offered over wss",
                )
                disk = _sysfs.wait_for(
                    lambda: _sysfs.first_path(_sysfs.block_devices(device)),
                    DRIVER_TIMEOUT_S,
                    "a disk on the bridge",
                )
                _read_back_equals(disk, content)
            _sysfs.wait_until(
                lambda: not _sysfs.find_devices(buses, vid, pid), 10.0, "the bridged disk gone"
            )
        text = listen_log.read_text()
        assert f"listening on 127.0.0.1:{LISTEN_PORT} (wss, {WS_PATH})" in text, text
        assert f"plugged {vid:04x}:{pid:04x} ({source.busid} from 127.0.0.1" in text, text
        assert "refused" not in text, text
