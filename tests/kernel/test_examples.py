"""The examples run on the bed: each example's own config files, given to the command they
are for, against the bed's template devices. A flag given beside ``--config`` wins over the
file, so where an example names real hardware (a scanner, a printer) the test names the
bed's device instead, and everything else comes from the example's file."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from . import _bridge, _devio, _gadget, _sysfs, _usbip, _usbtest

pytestmark = pytest.mark.kernel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DRIVER_TIMEOUT_S = 60.0
IO_TIMEOUT_S = 30.0
LAB_PORT, SCANNER_PORT = 3260, 3261


@contextlib.contextmanager
def _serving(argv: Sequence[str], port: int, log: Path) -> Iterator[str]:
    """``serve ARGV`` for the block, once it listens on ``port``; its address."""
    with _bridge.running(["serve", *argv, "--port", str(port)], log, "serve") as process:
        _sysfs.wait_until(
            lambda: process.poll() is not None or _usbip.listening(port),
            _bridge.PLUG_TIMEOUT_S,
            f"serve listening on port {port}",
        )
        assert process.returncode is None, log.read_text(errors="replace")
        yield f"{_usbip.LOOPBACK}:{port}"


@pytest.mark.timeout(600)
def test_lab_a_template_disk_served_and_attached_on_the_second_controller(
    backing_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    image, content = backing_file
    lab = EXAMPLES / "lab"
    with _gadget.storage_gadget(image) as source:  # gadget up disk --set file=IMAGE
        vid, pid = source.spec.vid, source.spec.pid
        serve = ["--config", str(lab / "serve.toml")]
        with _serving(serve, LAB_PORT, tmp_path / "serve.log") as address:
            attach = ["--config", str(lab / "disk.toml")]
            with _bridge.bridged(address, None, vid, pid, tmp_path / "attach.log", attach) as b:
                disk = _sysfs.wait_for(
                    lambda: _sysfs.first_path(_sysfs.block_devices(b.device)),
                    DRIVER_TIMEOUT_S,
                    "the lab disk on the second controller's bus",
                )
                read_back = _devio.read_disk(disk, len(content))
                assert _devio.first_difference(read_back, content) is None


@pytest.mark.timeout(600)
def test_scanner_a_vendor_bulk_device_streams_through_the_example(tmp_path: Path) -> None:
    scanner = EXAMPLES / "scanner"
    with _gadget.sourcesink_gadget() as source:  # the bed's stand-in for the scanner
        ident = f"{source.spec.vid:04x}:{source.spec.pid:04x}"
        serve = ["--config", str(scanner / "serve.toml"), "--bind", "127.0.0.1", "--allow", ident]
        with _serving(serve, SCANNER_PORT, tmp_path / "serve.log") as address:
            attach = [
                "--config",
                str(scanner / "scanner.toml"),
                "--device",
                ident,
                "--allow",
                ident,
            ]
            with _bridge.bridged(
                address, None, source.spec.vid, source.spec.pid, tmp_path / "attach.log", attach
            ) as bridge:
                _sysfs.wait_until(
                    lambda: "usbtest" in _sysfs.interface_drivers(bridge.device).values(),
                    DRIVER_TIMEOUT_S,
                    "usbtest bound to the bridged scanner",
                )
                node = _sysfs.usbfs_node(bridge.device)
                assert node is not None
                # usbtest case 2: bulk reads, every byte checked (pattern=1), 64 KiB URBs.
                run = _usbtest.run_test(node, 2, 16, 65536)
                assert run.iterations == 16
                assert f"plugged {ident} ({source.busid} on 127.0.0.1)" in bridge.text()


def _printer_nodes(bridged: Path) -> tuple[Path, Path]:
    """(the gadget's /dev/g_printerN, the host's /dev/usb/lpN) of the bridged printer."""
    gadget_side = Path("/sys/class/usb_printer_gadget")
    (printer,) = sorted(gadget_side.iterdir())
    interface = next(bridged.parent.glob(f"{bridged.name}:1.0"))
    lp = _sysfs.wait_for(
        lambda: _sysfs.first_path(sorted((interface / "usbmisc").glob("lp*"))),
        DRIVER_TIMEOUT_S,
        "usblp's lp node on the bridged printer",
    )
    return (
        _sysfs.char_device_node(_sysfs.read_text(printer / "dev")),
        _sysfs.char_device_node(_sysfs.read_text(lp / "dev")),
    )


@pytest.mark.timeout(600)
def test_kiosk_printer_prints_and_the_barcode_reader_needs_its_rule(
    usbipd: str, tmp_path: Path
) -> None:
    kiosk = EXAMPLES / "kiosk"
    receipt = b"\x1b@KIOSK RECEIPT 0001\n\x1dV\x00"  # ESC @, text, GS V 0 (cut)
    with _gadget.printer_gadget() as source, _usbip.exported(source.busid) as busid:
        ident = f"{source.spec.vid:04x}:{source.spec.pid:04x}"
        attach = ["--config", str(kiosk / "printer.toml"), "--device", ident]
        log = tmp_path / "printer.log"
        with _bridge.bridged(usbipd, None, source.spec.vid, source.spec.pid, log, attach) as b:
            gadget_node, host_node = _printer_nodes(b.device)
            deadline = time.monotonic() + IO_TIMEOUT_S
            paper = os.open(gadget_node, os.O_RDONLY | os.O_NONBLOCK)
            try:
                host = os.open(host_node, os.O_WRONLY)
                try:
                    assert os.write(host, receipt) == len(receipt)
                finally:
                    os.close(host)
                printed = _devio.read_exactly(paper, len(receipt), deadline, "the receipt")
            finally:
                os.close(paper)
            assert printed == receipt
    barcode = ["--config", str(kiosk / "barcode.toml")]
    with _gadget.keyboard_gadget() as source, _usbip.exported(source.busid) as busid:
        ident = f"{source.spec.vid:04x}:{source.spec.pid:04x}"
        where = [usbipd, "--udc", _bridge.BRIDGE_UDC, "--name", "bridge", "--device", ident]
        refused = _bridge.run_cli(["attach", *where, *barcode])
        assert refused.returncode == 1, refused.stderr
        assert refused.stderr == (
            f"usbip-gadget: refused {ident} 'Keyboard Gadget' ({busid} on {usbipd}): interface 0"
            f" is HID (03:01:01) and no rule admits it: --allow {ident} or --allow-class 03"
            " would\n"
        )
        allowed = [*barcode, "--device", ident, "--allow", ident]
        log = tmp_path / "barcode.log"
        with _bridge.bridged(usbipd, None, source.spec.vid, source.spec.pid, log, allowed) as b:
            _sysfs.wait_until(
                lambda: "usbhid" in _sysfs.interface_drivers(b.device).values(),
                DRIVER_TIMEOUT_S,
                "usbhid bound to the bridged barcode reader",
            )
