"""The kernel's own USB/IP: usbipd and usbip-host export, ``usbip attach`` imports into vhci-hcd."""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import _sysfs

LOOPBACK = "127.0.0.1"
USBIP_PORT = 3240
COMMAND_TIMEOUT_S = 30.0
IMPORT_TIMEOUT_S = 45.0
USBIP_HOST = Path("/sys/bus/usb/drivers/usbip-host")
VHCI_STATUS_GLOB = "vhci_hcd.*/status*"

# usbip_device_status (drivers/usb/usbip/usbip_common.h)
SDEV_ST_AVAILABLE = 1
VDEV_ST_NULL = 4

_TCP_LISTEN = "0A"
_BUSID = re.compile(r"^\d+-[\d.]+$")
_EXPORTED = re.compile(r"^\s*(\d+-[\d.]+): .*\(([0-9a-f]{4}):([0-9a-f]{4})\)\s*$")


class UsbipCommandError(RuntimeError):
    """A usbip command failed; the message is its command line and stderr."""


def run(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT_S) -> str:
    """Runs a command to completion and returns its stdout; fails with its stderr."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().replace("\n", " | ")
        raise UsbipCommandError(f"{' '.join(argv)} exited {done.returncode}: {detail}")
    return done.stdout


def listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == _TCP_LISTEN:
                return True
    return False


@contextlib.contextmanager
def usbipd(log: Path, timeout: float = COMMAND_TIMEOUT_S) -> Iterator[str]:
    """Runs usbipd in the foreground for the block; yields the address to reach it on."""
    with open(log, "ab") as sink:
        daemon = subprocess.Popen(["usbipd"], stdout=sink, stderr=subprocess.STDOUT)
    try:
        _sysfs.wait_until(
            lambda: daemon.poll() is not None or listening(USBIP_PORT),
            timeout,
            f"usbipd listening on port {USBIP_PORT}",
        )
        if daemon.returncode is not None:
            raise UsbipCommandError(f"usbipd exited {daemon.returncode} (see {log})")
        yield LOOPBACK
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def exportable(host: str, port: int = USBIP_PORT) -> dict[str, tuple[int, int]]:
    """``usbip list -r``: busid -> (idVendor, idProduct) of every device the server exports."""
    listed: dict[str, tuple[int, int]] = {}
    for line in run(["usbip", "--tcp-port", str(port), "list", "-r", host]).splitlines():
        if match := _EXPORTED.match(line):
            listed[match[1]] = (int(match[2], 16), int(match[3], 16))
    return listed


def stub_status(busid: str) -> int | None:
    """usbip-host's state for a device it holds (SDEV_ST_*), or None if it does not hold it."""
    text = _sysfs.read_text(_sysfs.USB_DEVICES / busid / "usbip_status")
    return int(text) if text.isdigit() else None


def held_by_usbip_host() -> list[str]:
    """Busids bound to usbip-host."""
    if not USBIP_HOST.is_dir():
        return []
    return sorted(p.name for p in USBIP_HOST.iterdir() if _BUSID.match(p.name))


@contextlib.contextmanager
def exported(busid: str, timeout: float = COMMAND_TIMEOUT_S) -> Iterator[str]:
    """``usbip bind`` for the block, ``usbip unbind`` after it (once no client holds it)."""
    bind(busid, timeout)
    try:
        yield busid
    finally:
        # A client that just left makes usbip-host reset the device before it is free again.
        with contextlib.suppress(TimeoutError):
            _sysfs.wait_until(
                lambda: stub_status(busid) in (SDEV_ST_AVAILABLE, None),
                timeout,
                f"usbip-host releasing {busid}",
            )
        run(["usbip", "unbind", "-b", busid])


def bind(busid: str, timeout: float = COMMAND_TIMEOUT_S) -> None:
    """``usbip bind``: usbipd exports ``busid`` once this returns."""
    run(["usbip", "bind", "-b", busid])
    _sysfs.wait_until(
        lambda: stub_status(busid) == SDEV_ST_AVAILABLE, timeout, f"usbip-host holding {busid}"
    )


@dataclass(frozen=True)
class VhciPort:
    """One line of vhci-hcd's ``status``: a port of the virtual host controller."""

    hub: str
    port: int
    status: int
    local_busid: str

    @property
    def in_use(self) -> bool:
        return self.status != VDEV_ST_NULL


def vhci_ports() -> list[VhciPort]:
    """Every port of every vhci-hcd controller."""
    ports: dict[int, VhciPort] = {}
    for status in sorted(_sysfs.PLATFORM.glob(VHCI_STATUS_GLOB)):
        for line in status.read_text().splitlines()[1:]:
            hub, port, sta, _speed, _devid, _sockfd, local_busid = line.split()
            ports[int(port)] = VhciPort(hub, int(port), int(sta), local_busid)
    return [ports[number] for number in sorted(ports)]


def ports_in_use() -> list[VhciPort]:
    return [port for port in vhci_ports() if port.in_use]


@dataclass(frozen=True)
class Imported:
    """A device imported with ``usbip attach``: its vhci port and its node on the vhci bus."""

    port: int
    device: Path


def _detach(port: int, vid: int, pid: int, timeout: float) -> None:
    run(["usbip", "detach", "-p", str(port)])
    _sysfs.wait_until(
        lambda: (
            all(p.port != port for p in ports_in_use())
            and not _sysfs.find_devices(_sysfs.vhci_buses(), vid, pid)
        ),
        timeout,
        f"vhci port {port} free",
    )


@contextlib.contextmanager
def attached(
    host: str,
    busid: str,
    vid: int,
    pid: int,
    timeout: float = IMPORT_TIMEOUT_S,
    tcp_port: int = USBIP_PORT,
) -> Iterator[Imported]:
    """``usbip attach`` for the block (waits until the host configured the device), then detach."""
    before = {port.port for port in ports_in_use()}
    run(["usbip", "--tcp-port", str(tcp_port), "attach", "-r", host, "-b", busid])
    port = _sysfs.wait_for(
        lambda: next((p.port for p in ports_in_use() if p.port not in before), None),
        timeout,
        f"a vhci port for {host} {busid}",
    )
    try:
        device = _sysfs.wait_for(
            lambda: _sysfs.configured_device(_sysfs.vhci_buses(), vid, pid),
            timeout,
            f"{vid:04x}:{pid:04x} configured on the vhci bus",
        )
        yield Imported(port=port, device=device)
    finally:
        _detach(port, vid, pid, timeout)


def release_everything() -> list[str]:
    """Scrubs vhci ports and usbip-host (the safety net after a leaking test)."""
    errors: list[str] = []
    for port in ports_in_use():
        try:
            run(["usbip", "detach", "-p", str(port.port)])
        except (UsbipCommandError, subprocess.TimeoutExpired) as exc:
            errors.append(str(exc))
    for busid in held_by_usbip_host():
        try:
            run(["usbip", "unbind", "-b", busid])
        except (UsbipCommandError, subprocess.TimeoutExpired) as exc:
            errors.append(str(exc))
    return errors
