"""The bridge end to end: real usbipd exports a source gadget on bus 1, ``usbip-gadget attach``
replays it on dummy_udc.1, and the host stack on bus 2 uses the replay with its own drivers."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from usbip_gadget.usb import DeviceDescriptor, parse_configuration

from . import _bridge, _devio, _gadget, _sysfs, _usbip

pytestmark = pytest.mark.kernel

DRIVER_TIMEOUT_S = 60.0
IO_TIMEOUT_S = 30.0
WRITE_OFFSET = 4 << 20
WRITE_LENGTH = 1 << 20


def _wait_node(nodes: Callable[[], list[Path]], what: str) -> Path:
    return _sysfs.wait_for(lambda: _sysfs.first_path(nodes()), DRIVER_TIMEOUT_S, what)


def _stopped_cleanly(bridge: _bridge.Bridged) -> None:
    _bridge.stop(bridge)
    assert bridge.exit_code == 0, bridge.text()
    assert bridge.stop_seconds is not None
    assert bridge.stop_seconds < 5.0, bridge.stop_seconds
    # The gadget is unbound before attach exits; the host's hub notices within moments.
    _sysfs.wait_until(lambda: bridge.find() is None, 5.0, "the host seeing the unplug")


@pytest.mark.timeout(400)
def test_storage_through_the_bridge(
    usbipd: str, backing_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    image, content = backing_file
    log = tmp_path / "attach.log"
    with (
        _gadget.storage_gadget(image) as source,
        _usbip.exported(source.busid) as busid,
        _bridge.bridged(usbipd, busid, source.spec.vid, source.spec.pid, log) as bridge,
    ):
        assert "plugged 1d6b:0104" in bridge.text()
        assert "(functionfs)" in bridge.text()
        disk = _wait_node(lambda: _sysfs.block_devices(bridge.device), "a disk on the bridge")
        assert "usb-storage" in _sysfs.interface_drivers(bridge.device).values()
        assert _devio.disk_size(disk) == len(content)
        read_back = _devio.read_disk(disk, len(content))
        mismatch = _devio.first_difference(read_back, content)
        assert mismatch is None, f"{disk} differs from the source image at byte {mismatch}"
        # A write through the bridge reaches the source's backing file.
        fresh = os.urandom(WRITE_LENGTH)
        _devio.write_disk_direct(disk, WRITE_OFFSET, fresh)
        with open(image, "rb") as source_image:
            source_image.seek(WRITE_OFFSET)
            assert source_image.read(WRITE_LENGTH) == fresh
        _report_descriptors(source.device, bridge.device, log.parent / "descriptors.txt")
        _stopped_cleanly(bridge)


def _report_descriptors(source: Path, bridged: Path, out: Path) -> None:
    """The device descriptor must match; every differing byte is written out for the record."""
    theirs, ours = _sysfs.descriptors(source), _sysfs.descriptors(bridged)
    lines = [f"source  {theirs.hex()}", f"bridged {ours.hex()}"]
    lines += [
        f"byte {i}: source 0x{a:02x} bridged 0x{b:02x}"
        for i, (a, b) in enumerate(zip(theirs, ours, strict=False))
        if a != b
    ]
    if len(theirs) != len(ours):
        lines.append(f"length: source {len(theirs)} bridged {len(ours)}")
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    kernel_out = os.environ.get("KERNEL_TIER_OUT")
    if kernel_out:
        Path(kernel_out, "bridge-descriptors.txt").write_text(text)
    assert DeviceDescriptor.parse(ours[:18]) == DeviceDescriptor.parse(theirs[:18])
    mine, source_config = parse_configuration(ours[18:]), parse_configuration(theirs[18:])
    assert [
        (e.b_endpoint_address, e.bm_attributes, e.w_max_packet_size) for e in mine.endpoints()
    ] == [
        (e.b_endpoint_address, e.bm_attributes, e.w_max_packet_size)
        for e in source_config.endpoints()
    ]


@pytest.mark.timeout(300)
def test_keyboard_through_the_bridge(usbipd: str, tmp_path: Path) -> None:
    with (
        _gadget.keyboard_gadget() as source,
        _usbip.exported(source.busid) as busid,
        _bridge.bridged(
            usbipd, busid, source.spec.vid, source.spec.pid, tmp_path / "attach.log",
            ["--allow-class", "03"],
        ) as bridge,
    ):  # fmt: skip
        event_node = _wait_node(lambda: _sysfs.event_devices(bridge.device), "a bridged input")
        hidg = _gadget.char_device(source, "kbd")
        events = _devio.type_key_a(hidg, event_node, time.monotonic() + IO_TIMEOUT_S)
        assert (_devio.EV_KEY, _devio.KEY_A, 1) in events
        _stopped_cleanly(bridge)


@pytest.mark.timeout(300)
def test_a_keyboard_is_plugged_only_with_a_rule(usbipd: str, tmp_path: Path) -> None:
    with _gadget.keyboard_gadget() as source, _usbip.exported(source.busid) as busid:
        vid, pid = source.spec.vid, source.spec.pid
        ident = f"{vid:04x}:{pid:04x}"
        gadgets = sorted(p.name for p in _gadget.GADGETS.iterdir())
        done = _bridge.run_cli(
            ["attach", usbipd, busid, "--udc", _bridge.BRIDGE_UDC, "--name", "bridge"]
        )
        assert done.returncode == 1, done.stderr
        assert done.stdout == ""
        assert done.stderr == (
            f"usbip-gadget: refused {ident} 'Keyboard Gadget' ({busid} on {usbipd}): interface 0"
            f" is HID (03:01:01); only --allow {ident} or --allow-class 03 plugs it\n"
        )
        # No gadget was made for it, and the host on the bridge's bus saw nothing.
        assert sorted(p.name for p in _gadget.GADGETS.iterdir()) == gadgets
        buses = _sysfs.udc_host_buses(_bridge.BRIDGE_UDC)
        assert not _sysfs.usb_devices(buses)
        # attach's connection closed: usbip-host resets the keyboard, then offers it again.
        _sysfs.wait_until(
            lambda: _usbip.stub_status(busid) == _usbip.SDEV_ST_AVAILABLE, 30.0, "re-export"
        )
        log = tmp_path / "attach.log"
        with _bridge.bridged(usbipd, busid, vid, pid, log, ["--allow-class", "03"]) as bridge:
            _wait_node(lambda: _sysfs.event_devices(bridge.device), "a bridged input")
            assert "usbhid" in _sysfs.interface_drivers(bridge.device).values()
            assert f"plugged {ident} ({busid} on {usbipd})" in bridge.text()
            assert "no --allow rule" not in bridge.text()
            _stopped_cleanly(bridge)


@pytest.mark.timeout(400)
def test_filesystem_made_through_the_bridge_mounts_on_the_source(
    usbipd: str, backing_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    image, _ = backing_file
    note = b"written through usbip-gadget\n"
    with (
        _gadget.storage_gadget(image) as source,
        _usbip.exported(source.busid) as busid,
        _bridge.bridged(
            usbipd, busid, source.spec.vid, source.spec.pid, tmp_path / "attach.log"
        ) as bridge,
    ):
        disk = _wait_node(lambda: _sysfs.block_devices(bridge.device), "a disk on the bridge")
        _usbip.run(["mkfs.ext2", "-q", "-F", str(disk)], timeout=120)
        mnt = tmp_path / "bridged"
        mnt.mkdir()
        _usbip.run(["mount", str(disk), str(mnt)])
        try:
            (mnt / "note.txt").write_bytes(note)
        finally:
            _usbip.run(["umount", str(mnt)], timeout=120)
        _stopped_cleanly(bridge)
    # The source side: the image itself, mounted read-only through a loop device.
    seen = tmp_path / "source"
    seen.mkdir()
    _usbip.run(["mount", "-o", "loop,ro", str(image), str(seen)])
    try:
        assert (seen / "note.txt").read_bytes() == note
    finally:
        _usbip.run(["umount", str(seen)])


@pytest.mark.timeout(400)
def test_server_going_away_unplugs_and_reconnect_replugs(
    usbipd: str, backing_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    image, _ = backing_file
    log = tmp_path / "attach.log"
    with (
        _gadget.storage_gadget(image) as source,
        _usbip.exported(source.busid) as busid,
        _bridge.bridged(
            usbipd, busid, source.spec.vid, source.spec.pid, log, ["--reconnect"]
        ) as bridge,
    ):
        # usbip unbind closes the server's end of the connection.
        began = time.monotonic()
        _usbip.run(["usbip", "unbind", "-b", busid])
        unbound = time.monotonic()
        _sysfs.wait_until(lambda: bridge.find() is None, 10.0, "the bridged device unplugged")
        gone = time.monotonic()
        figure = f"unbind took {unbound - began:.3f} s; unplugged {gone - unbound:.3f} s after it\n"
        for where in (log.parent, Path(os.environ.get("KERNEL_TIER_OUT", log.parent))):
            (where / "unplug.txt").write_text(figure)
        # The goal is 1 s; the half second on top is for detecting it under emulation.
        assert gone - unbound < 1.5, f"unplugged {gone - unbound:.2f} s after the close"
        assert bridge.process.poll() is None, "attach --reconnect exited"
        _usbip.run(["usbip", "bind", "-b", busid])
        _sysfs.wait_until(
            lambda: _usbip.stub_status(busid) == _usbip.SDEV_ST_AVAILABLE, 30.0, "re-export"
        )
        bridge.device = _bridge.wait_plugged(bridge)
        assert bridge.text().count("plugged 1d6b:0104") >= 2
        _stopped_cleanly(bridge)


@pytest.mark.timeout(600)
def test_attach_by_vid_pid_from_a_config_file_follows_the_device_to_a_new_busid(
    usbipd: str, backing_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    """The disk is pulled out of bus 1 on the server and plugged into bus 3: a new bus ID.
    ``attach --config`` naming it by VID:PID finds it there and plugs it in again."""
    image, content = backing_file
    log, config = tmp_path / "attach.log", tmp_path / "disk.toml"
    with (
        _gadget.spare_udc() as spare,
        _gadget.storage_gadget(image) as source,
        contextlib.ExitStack() as after_attach,
    ):
        vid, pid = source.spec.vid, source.spec.pid
        config.write_text(
            f'server = "{usbipd}"\ndevice = "{vid:04x}:{pid:04x}"\nreconnect = true\n'
        )
        old = source.busid
        _usbip.bind(old)
        with _bridge.bridged(None, None, vid, pid, log, ["--config", str(config)]) as bridge:
            _usbip.run(["usbip", "unbind", "-b", old])  # the server lets go of the device
            _sysfs.wait_until(lambda: bridge.find() is None, 10.0, "the bridged disk unplugged")
            new = _gadget.move(source, spare).name
            assert new != old
            after_attach.enter_context(_usbip.exported(new))
            device = _bridge.wait_plugged(bridge)
            disk = _sysfs.wait_for(
                lambda: _sysfs.first_path(_sysfs.block_devices(device)),
                DRIVER_TIMEOUT_S,
                "a disk on the bridge",
            )
            mismatch = _devio.first_difference(_devio.read_disk(disk, len(content)), content)
            assert mismatch is None, f"{disk} differs from the source image at byte {mismatch}"
            text = bridge.text()
            assert f"plugged {vid:04x}:{pid:04x} ({old} on {usbipd})" in text
            assert f"plugged {vid:04x}:{pid:04x} ({new} on {usbipd})" in text
            _stopped_cleanly(bridge)


def test_attach_refuses_a_missing_busid_in_one_line(usbipd: str) -> None:
    done = _bridge.run_cli(["attach", usbipd, "9-9", "--udc", _bridge.BRIDGE_UDC])
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "cannot import 9-9" in lines[0], done.stderr


@pytest.mark.timeout(600)
def test_a_second_attach_with_the_same_name_is_refused_and_sighup_unplugs(
    usbipd: str, backing_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    image, _content = backing_file
    log = tmp_path / "attach.log"
    with (
        _gadget.storage_gadget(image) as source,
        _usbip.exported(source.busid) as busid,
        _bridge.bridged(usbipd, busid, source.spec.vid, source.spec.pid, log) as bridge,
    ):
        second = _bridge.run_cli(
            ["attach", usbipd, busid, "--udc", _bridge.BRIDGE_UDC, "--name", "bridge"]
        )
        assert second.returncode == 1, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert "gadget bridge is in use by another usbip-gadget" in lines[0]
        assert bridge.find() is not None  # the first one is still plugged
        # An SSH session dropping: SIGHUP unplugs cleanly, as SIGTERM does.
        began = time.monotonic()
        bridge.process.send_signal(signal.SIGHUP)
        assert bridge.process.wait(_bridge.STOP_TIMEOUT_S) == 0, bridge.text()
        assert time.monotonic() - began < 5.0
        assert "SIGHUP: unplugging" in bridge.text()
        _sysfs.wait_until(lambda: bridge.find() is None, 5.0, "the host seeing the unplug")
