"""``usbip-gadget serve`` on a real kernel: the source disk on the first dummy bus, not bound to
usbip-host, exported through libusb/usbfs to the kernel's own ``usbip attach`` and to our bridge.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import _bridge, _devio, _gadget, _sysfs, _usbip

pytestmark = pytest.mark.kernel

SERVE_PORT = 3250
START_TIMEOUT_S = _bridge.PLUG_TIMEOUT_S  # a CLI start
STOP_TIMEOUT_S = 15.0
DRIVER_TIMEOUT_S = 60.0


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    log: Path
    address: str

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def served(busid: str, log: Path) -> Iterator[Served]:
    """``serve --busid BUSID`` on SERVE_PORT for the block; SIGTERM must end it with 0."""
    argv = ["serve", "--busid", busid, "--port", str(SERVE_PORT)]
    with _bridge.running(argv, log, "serve") as process:
        state = Served(process, log, f"{_usbip.LOOPBACK}:{SERVE_PORT}")
        _sysfs.wait_until(
            lambda: process.poll() is not None or _usbip.listening(SERVE_PORT),
            START_TIMEOUT_S,
            f"serve listening on port {SERVE_PORT}",
        )
        assert process.returncode is None, f"serve exited {process.returncode}: {state.text()}"
        yield state


def _read_back_equals(disk: Path, content: bytes) -> None:
    assert _devio.disk_size(disk) == len(content)
    read_back = _devio.read_disk(disk, len(content))
    mismatch = _devio.first_difference(read_back, content)
    assert mismatch is None, f"{disk} differs from the source image at byte {mismatch}"


def _hostile_clients() -> None:
    """Garbage, and a header cut short then abandoned: each costs only its own connection."""
    for junk in (b"GET / HTTP/1.0\r\n\r\n" * 4, bytes.fromhex("0111 8005")):
        with socket.create_connection((_usbip.LOOPBACK, SERVE_PORT), timeout=10) as sock:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(1024) == b""  # closed by serve, not answered


def _usb_storage_back_on(device: Path) -> None:
    """serve gave the source's interface back to the host's usb-storage when it let go."""
    _sysfs.wait_until(
        lambda: "usb-storage" in _sysfs.interface_drivers(device).values(),
        DRIVER_TIMEOUT_S,
        f"usb-storage bound to {device.name} again",
    )


@pytest.mark.timeout(400)
def test_serve_exports_to_the_kernels_usbip_attach(
    backing_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    image, content = backing_file
    with _gadget.storage_gadget(image) as source:
        vid, pid = source.spec.vid, source.spec.pid
        with served(source.busid, tmp_path / "serve.log") as server:
            _hostile_clients()
            assert _usbip.exportable(_usbip.LOOPBACK, SERVE_PORT) == {source.busid: (vid, pid)}
            with _usbip.attached(
                _usbip.LOOPBACK, source.busid, vid, pid, tcp_port=SERVE_PORT
            ) as imported:
                # vhci-hcd enumerated the served device: the same descriptors as the source.
                assert _sysfs.descriptors(imported.device) == _sysfs.descriptors(source.device)
                disk = _sysfs.wait_for(
                    lambda: _sysfs.first_path(_sysfs.block_devices(imported.device)),
                    DRIVER_TIMEOUT_S,
                    "a disk on the imported device",
                )
                _read_back_equals(disk, content)
            _sysfs.wait_until(
                lambda: "released" in server.text(), STOP_TIMEOUT_S, "serve logging the release"
            )
            assert f"imported {source.busid} ({vid:04x}:{pid:04x})" in server.text()
        _usb_storage_back_on(source.device)


@pytest.mark.timeout(400)
def test_serve_to_our_bridge(backing_file: tuple[Path, bytes], tmp_path: Path) -> None:
    image, content = backing_file
    with _gadget.storage_gadget(image) as source:
        vid, pid = source.spec.vid, source.spec.pid
        with served(source.busid, tmp_path / "serve.log") as server:
            attach_log = tmp_path / "attach.log"
            with _bridge.bridged(server.address, source.busid, vid, pid, attach_log) as bridge:
                disk = _sysfs.wait_for(
                    lambda: _sysfs.first_path(_sysfs.block_devices(bridge.device)),
                    DRIVER_TIMEOUT_S,
                    "a disk on the bridge",
                )
                _read_back_equals(disk, content)
                fresh = os.urandom(64 * 1024)
                fd = _devio.open_disk(disk, os.O_WRONLY | os.O_SYNC)
                try:
                    os.pwrite(fd, fresh, 1 << 20)
                finally:
                    os.close(fd)
                with open(image, "rb") as source_image:
                    source_image.seek(1 << 20)
                    assert source_image.read(len(fresh)) == fresh
                _bridge.stop(bridge)
                assert bridge.exit_code == 0, bridge.text()
            _sysfs.wait_until(
                lambda: "released" in server.text(), STOP_TIMEOUT_S, "serve logging the release"
            )
        _usb_storage_back_on(source.device)


@pytest.mark.timeout(400)
def test_a_served_device_pulled_out_ends_the_session(
    backing_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    """The source's UDC is unbound under an idle bridged session: serve ends it, the bridge
    unplugs its gadget, and the device is neither listed nor importable any more."""
    image, _content = backing_file
    with _gadget.storage_gadget(image) as source:
        vid, pid = source.spec.vid, source.spec.pid
        with served(source.busid, tmp_path / "serve.log") as server:
            attach_log = tmp_path / "attach.log"
            with _bridge.bridged(server.address, source.busid, vid, pid, attach_log) as bridge:
                _sysfs.wait_for(
                    lambda: _sysfs.first_path(_sysfs.block_devices(bridge.device)),
                    DRIVER_TIMEOUT_S,
                    "a disk on the bridge",
                )
                (source.path / "UDC").write_text("\n")  # pulled out of bus 1
                try:
                    _sysfs.wait_until(
                        lambda: "device unplugged" in server.text(),
                        10.0,
                        "serve ending the session",
                    )
                    _sysfs.wait_until(lambda: bridge.find() is None, 10.0, "the bridge unplugged")
                    assert _usbip.exportable(_usbip.LOOPBACK, SERVE_PORT) == {}
                    done = _bridge.run_cli(["describe", server.address, source.busid])
                    assert done.returncode == 1, done
                    assert done.stderr.strip().count("\n") == 0, done.stderr
                    assert f"cannot import {source.busid}" in done.stderr
                finally:
                    (source.path / "UDC").write_text(source.udc)  # back in for the teardown
