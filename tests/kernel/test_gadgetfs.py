"""The GadgetFS backend end to end: devices FunctionFS cannot express (CDC-ACM, whose functional
descriptors are class-specific, type 0x24) are replayed through gadgetfs on dummy_udc.1, and the
host stack on bus 2 drives them with its own drivers.

Each test imports its source once with ``plan --json`` and once with ``attach``: ``plan`` must
name every byte the host on bus 2 reads differently from what the source's host read on bus 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import _bridge, _devio, _gadget, _sysfs, _usbip

pytestmark = pytest.mark.kernel

DRIVER_TIMEOUT_S = 60.0
IO_TIMEOUT_S = 30.0
RELEASE_TIMEOUT_S = 30.0
UNBIND_TIMEOUT_S = 5.0
UDC_CLASS = Path("/sys/class/udc")
RECORD = "gadgetfs-descriptors.txt"
USBMON_POLL_S = 0.05

TO_SOURCE = bytes(range(256)) * 3
TO_HOST = b"gadgetfs reply \x00\x11\x13\x7f\x80\xff\r\n" * 24

# CDC SET_LINE_CODING: bmRequestType 0x21 (class, interface, host to device), bRequest 0x20.
SET_LINE_CODING = (0x21, 0x20)
CMSPAR = 0o10000000000  # mark/space parity (asm-generic/termbits.h); Python's termios lacks it
# What cdc_acm's set_termios sends for 57600 baud, CS7, PARENB, CSTOPB: struct usb_cdc_line_coding
# is dwDTERate (LE), bCharFormat (2: two stop bits), bParityType (2: even), bDataBits.
LINE_CODING = struct.pack("<IBBB", 57600, 2, 2, 7)

Difference = tuple[int, int, int]  # (offset in the descriptors file, remote byte, local byte)


def _wait_node(nodes: Callable[[], list[Path]], what: str) -> Path:
    return _sysfs.wait_for(lambda: _sysfs.first_path(nodes()), DRIVER_TIMEOUT_S, what)


# -- plan -----------------------------------------------------------------------------------


def _plan(server: str, busid: str) -> dict[str, Any]:
    """``plan --json`` for the device; returns once usbip-host offers the device again."""
    done = _bridge.run_cli(["plan", server, busid, "--udc", _bridge.BRIDGE_UDC, "--json"])
    assert done.returncode == 0, (
        f"plan exited {done.returncode}: {done.stdout.strip()} {done.stderr.strip()}"
    )
    plan = json.loads(done.stdout)
    assert isinstance(plan, dict), done.stdout
    # The import plan made is over: usbip-host resets the device before it is free again.
    _sysfs.wait_until(
        lambda: _usbip.stub_status(busid) == _usbip.SDEV_ST_AVAILABLE,
        RELEASE_TIMEOUT_S,
        f"usbip-host offering {busid} again after plan",
    )
    return plan


def _predicted(plan: dict[str, Any]) -> set[Difference]:
    """The plan's verdict for a CDC device, and the bytes it says the host will see changed."""
    assert plan["refused"] is None, plan
    assert plan["backend"] == "gadgetfs", plan
    refusals = plan["functionfs_refuses"]
    assert isinstance(refusals, list), plan
    assert any("0x24" in reason for reason in refusals), refusals
    predicted: set[Difference] = set()
    for entry in plan["differences"]:
        offset, remote, local = entry["offset"], entry["remote"], entry["local"]
        assert all(isinstance(v, int) for v in (offset, remote, local)), entry
        assert 0 <= remote <= 0xFF, entry
        assert 0 <= local <= 0xFF, entry
        assert isinstance(entry["field"], str), entry
        assert entry["field"], entry
        if remote != local:
            predicted.add((offset, remote, local))
    return predicted


def _observed(remote: bytes, local: bytes) -> set[Difference]:
    return {(i, a, b) for i, (a, b) in enumerate(zip(remote, local, strict=True)) if a != b}


def _record(out: Path, name: str, plan: dict[str, Any], remote: bytes, local: bytes) -> None:
    """Appends both descriptor dumps, plan's differences and the seen ones to the tier's output."""
    lines = [
        f"--- {name}: plan chose {plan.get('backend')}",
        f"source  {remote[:18].hex(' ')} | {remote[18:].hex(' ')}",
        f"bridged {local[:18].hex(' ')} | {local[18:].hex(' ')}",
    ]
    lines += [f"plan    {json.dumps(entry)}" for entry in plan.get("differences") or []]
    lines += [
        f"seen    byte {i}: source 0x{a:02x} bridged 0x{b:02x}"
        for i, (a, b) in enumerate(zip(remote, local, strict=False))
        if a != b
    ]
    if len(remote) != len(local):
        lines.append(f"seen    length: source {len(remote)} bridged {len(local)}")
    with open(out / RECORD, "a") as record:
        record.write("\n".join(lines) + "\n")


# -- attach -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _through_gadgetfs(
    server: str, source: _gadget.Gadget, busid: str, out: Path, log: Path
) -> Iterator[_bridge.Bridged]:
    """``plan`` then ``attach`` (backend auto) for the block. The attach must have chosen
    gadgetfs, and, once the block has passed, the host on bus 2 must have read the source's
    descriptors except exactly where plan said it would not."""
    vid, pid = source.spec.vid, source.spec.pid
    remote = _sysfs.descriptors(source.device)
    plan = _plan(server, busid)
    predicted = _predicted(plan)
    with _bridge.bridged(server, busid, vid, pid, log) as bridge:
        plugged = (
            rf"plugged {vid:04x}:{pid:04x} \({re.escape(busid)} on {re.escape(server)}\)"
            rf" into {re.escape(_bridge.BRIDGE_UDC)} \(gadgetfs\)$"
        )
        assert re.search(plugged, bridge.text(), re.MULTILINE), bridge.text()
        local = _sysfs.descriptors(bridge.device)
        _record(out, source.spec.name, plan, remote, local)
        yield bridge
        # usbip-host keeps the source's node, and what its host read, on bus 1.
        assert _sysfs.descriptors(source.device) == remote
        assert len(local) == len(remote), f"source {len(remote)} bytes, bridged {len(local)}"
        assert _observed(remote, local) == predicted, f"see {out / RECORD}"


def _stopped_cleanly(bridge: _bridge.Bridged) -> None:
    _bridge.stop(bridge)
    assert bridge.exit_code == 0, bridge.text()
    _sysfs.wait_until(lambda: bridge.find() is None, 5.0, "the host seeing the unplug")
    # Closing gadgetfs's ep0 file unregisters its gadget driver, which frees the controller.
    function = UDC_CLASS / _bridge.BRIDGE_UDC / "function"
    _sysfs.wait_until(
        lambda: _sysfs.read_text(function) == "",
        UNBIND_TIMEOUT_S,
        f"{_bridge.BRIDGE_UDC} free again ({function}: {_sysfs.read_text(function)!r})",
    )


# -- serial -------------------------------------------------------------------------------------


def _cross_both_ways(
    host_fd: int, host_tty: Path, source_fd: int, source_tty: Path, deadline: float
) -> None:
    _devio.write_all(host_fd, TO_SOURCE, deadline, f"write to {host_tty}")
    received = _devio.read_exactly(
        source_fd, len(TO_SOURCE), deadline, f"{host_tty} -> {source_tty}"
    )
    mismatch = _devio.first_difference(received, TO_SOURCE)
    assert mismatch is None, f"{source_tty} received other bytes than sent, from byte {mismatch}"
    _devio.write_all(source_fd, TO_HOST, deadline, f"write to {source_tty}")
    replied = _devio.read_exactly(host_fd, len(TO_HOST), deadline, f"{source_tty} -> {host_tty}")
    mismatch = _devio.first_difference(replied, TO_HOST)
    assert mismatch is None, f"{host_tty} received other bytes than sent, from byte {mismatch}"


def _set_line(fd: int) -> None:
    """57600 baud, 7 data bits, even parity, 2 stop bits: cdc_acm sends SET_LINE_CODING."""
    attributes = termios.tcgetattr(fd)
    cflag = attributes[2] & ~(termios.CSIZE | termios.PARODD | CMSPAR)
    attributes[2] = cflag | termios.CS7 | termios.PARENB | termios.CSTOPB
    attributes[4] = attributes[5] = termios.B57600
    termios.tcsetattr(fd, termios.TCSANOW, attributes)


@dataclass(frozen=True)
class ControlOut:
    """A control OUT URB as usbmon saw it: setup packet, data stage, completion status."""

    setup: tuple[int, int, int, int, int]  # bmRequestType, bRequest, wValue, wIndex, wLength
    data: bytes
    status: int


@contextlib.contextmanager
def _usbmon_text(usbmon: Path, bus: int) -> Iterator[int]:
    """usbmon's ``<bus>u`` text stream, non-blocking. A reader only gets the URBs submitted or
    completed after it opened the file."""
    fd = os.open(usbmon / f"{bus}u", os.O_RDONLY | os.O_NONBLOCK)
    try:
        yield fd
    finally:
        os.close(fd)


def _control_outs(
    fd: int,
    address: str,
    request: tuple[int, int],
    done: Callable[[ControlOut], bool],
    deadline: float,
) -> list[ControlOut]:
    """The completed control OUT URBs with this bmRequestType and bRequest to ``address``
    (``Co:BUS:DEV:0``), up to the first for which ``done`` is true.

    usbmon's text lines (Documentation/usb/usbmon.rst, 'u' format): ``TAG TIME S ADDR s TYPE
    REQ VALUE INDEX LENGTH LEN = DATA...`` for a control submission, ``TAG TIME C ADDR STATUS
    LEN >`` for the completion of an OUT transfer; TAG pairs the two.
    """
    submitted: dict[str, tuple[tuple[int, int, int, int, int], bytes]] = {}
    completed: list[ControlOut] = []
    pending = b""
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"usbmon: no matching {request[0]:02x} {request[1]:02x} control OUT to {address}"
                f" completed; seen {completed}, still pending {submitted}"
            )
        try:
            pending += os.read(fd, 4096)
        except BlockingIOError:
            time.sleep(USBMON_POLL_S)
            continue
        *lines, pending = pending.split(b"\n")
        for line in lines:
            words = line.decode("ascii", errors="replace").split()
            if len(words) < 5 or words[3] != address:
                continue
            tag, event = words[0], words[2]
            if event == "S" and words[4] == "s" and len(words) >= 11:
                type_, req, value, index, length = (int(w, 16) for w in words[5:10])
                if (type_, req) != request:
                    continue
                data = bytes.fromhex("".join(words[12:])) if words[11:12] == ["="] else b""
                submitted[tag] = ((type_, req, value, index, length), data)
            elif event in ("C", "E") and tag in submitted:
                setup, data = submitted.pop(tag)
                completed.append(ControlOut(setup, data, int(words[4])))
                if done(completed[-1]):
                    return completed


@pytest.mark.timeout(400)
def test_serial_through_gadgetfs(
    usbipd: str, usb_stack: Path, usbmon: Path, tmp_path: Path
) -> None:
    with (
        _gadget.serial_gadget() as source,
        _usbip.exported(source.busid) as busid,
        _through_gadgetfs(usbipd, source, busid, usb_stack, tmp_path / "attach.log") as bridge,
    ):
        host_tty = _wait_node(lambda: _sysfs.tty_devices(bridge.device), "a ttyACM on the bridge")
        drivers = _sysfs.interface_drivers(bridge.device)
        assert drivers, f"{bridge.device} has no interfaces"
        assert set(drivers.values()) == {"cdc_acm"}, drivers
        source_tty = _gadget.serial_tty(source)
        # usbip-host submits what the bridge forwards as URBs to the source on its host's bus.
        bus = int(_sysfs.read_text(source.device / "busnum"))
        devnum = int(_sysfs.read_text(source.device / "devnum"))
        deadline = time.monotonic() + IO_TIMEOUT_S
        with (
            _devio.raw_tty(source_tty) as source_fd,
            _devio.raw_tty(host_tty) as host_fd,
        ):
            _cross_both_ways(host_fd, host_tty, source_fd, source_tty, deadline)
            with _usbmon_text(usbmon, bus) as monitor:
                _set_line(host_fd)
                seen = _control_outs(
                    monitor,
                    f"Co:{bus}:{devnum:03d}:0",
                    SET_LINE_CODING,
                    lambda control: control.data == LINE_CODING,
                    time.monotonic() + IO_TIMEOUT_S,
                )
            assert termios.tcgetattr(host_fd)[4] == termios.B57600
        # Interface 0 is the ACM control interface; f_acm accepted the 7 bytes (status 0).
        assert seen[-1] == ControlOut((0x21, 0x20, 0, 0, 7), LINE_CODING, 0), seen
        _stopped_cleanly(bridge)


# -- composite ---------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_composite_through_gadgetfs(
    usbipd: str, usb_stack: Path, backing_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    image, content = backing_file
    with (
        _gadget.composite_gadget(image) as source,
        _usbip.exported(source.busid) as busid,
        _through_gadgetfs(usbipd, source, busid, usb_stack, tmp_path / "attach.log") as bridge,
    ):
        host_tty = _wait_node(lambda: _sysfs.tty_devices(bridge.device), "a ttyACM on the bridge")
        disk = _wait_node(lambda: _sysfs.block_devices(bridge.device), "a disk on the bridge")
        drivers = _sysfs.interface_drivers(bridge.device)
        assert set(drivers.values()) == {"cdc_acm", "usb-storage"}, drivers
        assert _devio.disk_size(disk) == len(content)
        read_back = _devio.read_disk(disk, len(content))
        mismatch = _devio.first_difference(read_back, content)
        assert mismatch is None, f"{disk} differs from the source image at byte {mismatch}"
        source_tty = _gadget.serial_tty(source)
        deadline = time.monotonic() + IO_TIMEOUT_S
        with (
            _devio.raw_tty(source_tty) as source_fd,
            _devio.raw_tty(host_tty) as host_fd,
        ):
            _cross_both_ways(host_fd, host_tty, source_fd, source_tty, deadline)
        _stopped_cleanly(bridge)


# -- network (alternate settings) ---------------------------------------------------------------

ETH_P_EXPERIMENTAL = 0x88B5  # IEEE 802 local experimental EtherType
BROADCAST = b"\xff" * 6


def _netdev(device: Path) -> int | None:
    """The ifindex of the network interface a driver made of one of ``device``'s
    interfaces (by index: the kernel may rename it, usb1 → enx<MAC>, after it appears)."""
    for node in sorted(device.glob(f"{device.name}:*/net/*")):
        index = _sysfs.read_text(node / "ifindex")
        if index.isdigit():
            return int(index)
    return None


def _link_up(index: int) -> str:
    """Brings the interface up; returns its name (looked up again if it was just renamed)."""
    for _attempt in range(3):
        name = socket.if_indextoname(index)
        done = subprocess.run(
            ["ip", "link", "set", name, "up"],
            capture_output=True, text=True, timeout=IO_TIMEOUT_S, check=False,
        )  # fmt: skip
        if done.returncode == 0:
            return name
        time.sleep(0.5)
    raise AssertionError(f"ip link set {name} up: {done.stderr.strip()}")


@contextlib.contextmanager
def _raw_socket(ifname: str) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_EXPERIMENTAL))
    try:
        sock.bind((ifname, ETH_P_EXPERIMENTAL))
        sock.settimeout(IO_TIMEOUT_S)
        yield sock
    finally:
        sock.close()


def _frame_crosses(sender: str, receiver: str, payload: bytes) -> None:
    """An Ethernet frame sent on ``sender`` arrives whole on ``receiver``."""
    with _raw_socket(receiver) as rx, _raw_socket(sender) as tx:
        source_mac = bytes.fromhex(
            _sysfs.read_text(Path(f"/sys/class/net/{sender}/address")).replace(":", "")
        )
        frame = BROADCAST + source_mac + struct.pack("!H", ETH_P_EXPERIMENTAL) + payload
        tx.send(frame)
        deadline = time.monotonic() + IO_TIMEOUT_S
        while True:
            rx.settimeout(max(0.1, deadline - time.monotonic()))
            received = rx.recv(4096)
            if received[14:] == payload:
                return
            assert time.monotonic() < deadline, f"no frame from {sender} on {receiver}"


@pytest.mark.timeout(400)
def test_network_adapter_switches_its_alternate_setting_through_gadgetfs(
    usbipd: str, usb_stack: Path, tmp_path: Path
) -> None:
    """CDC Ethernet: the host's cdc_ether selects the data interface's setting 1 (the bulk
    endpoints) with SET_INTERFACE; it must reach the source, and frames must cross both ways."""
    with (
        _gadget.network_gadget() as source,
        _usbip.exported(source.busid) as busid,
        _through_gadgetfs(usbipd, source, busid, usb_stack, tmp_path / "attach.log") as bridge,
    ):
        host_index = _sysfs.wait_for(
            lambda: _netdev(bridge.device), DRIVER_TIMEOUT_S, "a network interface on the bridge"
        )
        assert set(_sysfs.interface_drivers(bridge.device).values()) == {"cdc_ether"}
        source_name = _sysfs.read_text(source.function_dir("net") / "ifname")
        host_if = _link_up(host_index)
        source_if = _link_up(socket.if_nametoindex(source_name))
        # f_ecm turns the carrier on when setting 1 of its data interface is selected.
        _sysfs.wait_until(
            lambda: _sysfs.read_text(Path(f"/sys/class/net/{source_if}/carrier")) == "1",
            DRIVER_TIMEOUT_S,
            f"carrier on the source's {source_if} (SET_INTERFACE applied on the source)",
        )
        _frame_crosses(host_if, source_if, os.urandom(1000))
        _frame_crosses(source_if, host_if, os.urandom(1000))
        _stopped_cleanly(bridge)
