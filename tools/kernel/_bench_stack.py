"""The bench's USB stack: modules, the source disk gadget, usbipd and usbip-host, vhci-hcd
imports, the bridge process, and netem on loopback.

Each context manager undoes its step on the way out, failure or not; ``scrub`` is the safety net
for whatever an interrupted step left behind.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from _bench_sysfs import (
    COMMAND_TIMEOUT_S,
    KILL_GRACE_S,
    BenchError,
    one_line,
    run,
    the_configured_device,
    udc_host_buses,
)
from tests.kernel._sysfs import (
    PLATFORM,
    USB_DEVICES,
    controller_buses,
    read_text,
    usb_devices,
    wait_for,
    wait_until,
)

# The guest runs no udev: every driver is loaded by hand. (module, parameters)
MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("dummy_hcd", ("num=2",)),
    ("libcomposite", ()),
    ("usb_f_mass_storage", ()),
    ("usb_f_fs", ()),
    ("usbip-core", ()),
    ("usbip-host", ()),
    ("vhci-hcd", ()),
    ("usb-storage", ()),
    ("sd_mod", ()),
    ("sch_netem", ()),
)
MODPROBE_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 60.0
PLUG_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

SOURCE_UDC, BRIDGE_UDC = "dummy_udc.0", "dummy_udc.1"
CONFIGFS = Path("/sys/kernel/config")
GADGETS = CONFIGFS / "usb_gadget"
USBIP_HOST = Path("/sys/bus/usb/drivers/usbip-host")
USBIP_PORT = 3240
LOOPBACK = "127.0.0.1"
SOURCE_GADGET = "bench-source"
SOURCE_VID_PID = "1d6b:0104"  # Linux Foundation, Multifunction Composite Gadget
SDEV_ST_AVAILABLE = 1  # usbip_device_status (drivers/usb/usbip/usbip_common.h)
VDEV_ST_NULL = 4
PLUGGED = re.compile(r"\bplugged\b")  # the bridge's line when its gadget is up ("unplugged" is not)


def load(modules: Sequence[tuple[str, Sequence[str]]]) -> None:
    """``modprobe`` each (module, parameters)."""
    for module, parameters in modules:
        run(["modprobe", module, *parameters], MODPROBE_TIMEOUT_S)


def prepare() -> None:
    """Loads the modules, mounts configfs and brings lo up."""
    load(MODULES)
    mounts = Path("/proc/mounts").read_text().splitlines()
    if not any(line.split()[1:3] == [str(CONFIGFS), "configfs"] for line in mounts):
        run(["mount", "-t", "configfs", "none", str(CONFIGFS)])
    run(["ip", "link", "set", "lo", "up"])


def _write(path: Path, value: str) -> None:
    with open(path, "w") as attribute:
        attribute.write(value)


def _build_source(root: Path, backing: Path, created: list[Path]) -> None:
    """A configfs gadget with one mass_storage function backed by ``backing``."""
    vid, pid = SOURCE_VID_PID.split(":")
    function = root / "functions" / "mass_storage.disk"
    config = root / "configs" / "c.1"
    strings = root / "strings" / "0x409"
    for directory in (root, strings, function, config):
        directory.mkdir()
        created.append(directory)
    for attribute, value in (("idVendor", f"0x{vid}"), ("idProduct", f"0x{pid}")):
        _write(root / attribute, value)
    for attribute, value in (("manufacturer", "usbip-gadget"), ("product", "Bench Disk")):
        _write(strings / attribute, value)
    _write(strings / "serialnumber", "0123456789")
    _write(function / "lun.0" / "file", str(backing))
    _write(config / "MaxPower", "100")
    (config / function.name).symlink_to(function)
    created.append(config / function.name)


def _remove_tree(root: Path, created: list[Path]) -> None:
    """Unbinds the gadget, then removes what was created, newest first, past any error."""
    errors: list[str] = []
    for step in [root / "UDC", *reversed(created)]:
        try:
            if step.name == "UDC":
                if read_text(step):
                    _write(step, "\n")
            elif step.is_symlink():
                step.unlink()
            else:
                step.rmdir()
        except OSError as exc:
            errors.append(f"{step}: {exc.strerror}")
    if errors:
        raise BenchError("gadget teardown: " + "; ".join(errors))


@contextlib.contextmanager
def source_disk(backing: Path, udc: str) -> Iterator[Path]:
    """The mass-storage gadget bound to ``udc``; yields its device on the host side."""
    root = GADGETS / SOURCE_GADGET
    buses = udc_host_buses(udc)
    created: list[Path] = []
    try:
        _build_source(root, backing, created)
        _write(root / "UDC", udc)
        yield wait_for(
            lambda: the_configured_device(buses, SOURCE_VID_PID),
            SETTLE_TIMEOUT_S,
            f"the source disk configured on bus {sorted(buses)}",
        )
    finally:
        _remove_tree(root, created)
        wait_until(lambda: not usb_devices(buses), SETTLE_TIMEOUT_S, "the source disk gone")


def listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # TCP_LISTEN
                return True
    return False


def stop(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL after a grace period; a process that will not die is abandoned."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(KILL_GRACE_S)


@contextlib.contextmanager
def usbipd(log: Path) -> Iterator[str]:
    """The kernel's usbipd in the foreground for the block; yields the address to reach it on."""
    with open(log, "ab") as sink:
        daemon = subprocess.Popen(
            ["usbipd"], stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        wait_until(
            lambda: daemon.poll() is not None or listening(USBIP_PORT),
            COMMAND_TIMEOUT_S,
            f"usbipd listening on port {USBIP_PORT}",
        )
        if daemon.returncode is not None:
            raise BenchError(f"usbipd exited {daemon.returncode} (see {log.name})")
        yield LOOPBACK
    finally:
        stop(daemon)


def _stub_status(busid: str) -> int | None:
    text = read_text(USB_DEVICES / busid / "usbip_status")
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def exported(busid: str) -> Iterator[str]:
    """``usbip bind`` for the block, ``usbip unbind`` after it once no client holds the device."""
    run(["usbip", "bind", "-b", busid])
    try:
        wait_until(
            lambda: _stub_status(busid) == SDEV_ST_AVAILABLE,
            SETTLE_TIMEOUT_S,
            f"usbip-host holding {busid}",
        )
        yield busid
    finally:
        # A client that just left makes usbip-host reset the device before it is free again.
        with contextlib.suppress(BenchError):
            wait_until(
                lambda: _stub_status(busid) in (SDEV_ST_AVAILABLE, None),
                SETTLE_TIMEOUT_S,
                f"usbip-host releasing {busid}",
            )
        run(["usbip", "unbind", "-b", busid])


def _vhci_ports_in_use() -> set[int]:
    ports: set[int] = set()
    for status in PLATFORM.glob("vhci_hcd.*/status*"):
        for line in read_text(status).splitlines()[1:]:
            fields = line.split()
            if int(fields[2]) != VDEV_ST_NULL:
                ports.add(int(fields[1]))
    return ports


@contextlib.contextmanager
def vhci_import(server: str, busid: str, vid_pid: str = SOURCE_VID_PID) -> Iterator[Path]:
    """``usbip attach`` for the block, then ``usbip detach``; yields the device on the vhci bus."""
    before = _vhci_ports_in_use()
    run(["usbip", "attach", "-r", server, "-b", busid])
    port = wait_for(
        lambda: min(_vhci_ports_in_use() - before, default=None),
        SETTLE_TIMEOUT_S,
        f"a vhci port for {busid}",
    )
    buses = controller_buses("vhci_hcd.*")
    try:
        yield wait_for(
            lambda: the_configured_device(buses, vid_pid),
            SETTLE_TIMEOUT_S,
            f"the imported {vid_pid} configured on the vhci bus",
        )
    finally:
        run(["usbip", "detach", "-p", str(port)])
        wait_until(
            lambda: port not in _vhci_ports_in_use() and not usb_devices(buses),
            SETTLE_TIMEOUT_S,
            f"vhci port {port} free",
        )
        # usbip-host resets the device when its client leaves; then it is offered again.
        wait_until(
            lambda: _stub_status(busid) == SDEV_ST_AVAILABLE,
            SETTLE_TIMEOUT_S,
            f"usbip-host offering {busid} again",
        )


class _OutputWatch:
    """Copies a process's output to a log and notices the line that says it plugged the gadget."""

    def __init__(self, process: subprocess.Popen[str], log: Path, marker: re.Pattern[str]) -> None:
        self.last_line = ""
        self.plugged = False
        self._settled = threading.Event()
        self._thread = threading.Thread(target=self._copy, args=(process, log, marker), daemon=True)
        self._thread.start()

    def _copy(self, process: subprocess.Popen[str], log: Path, marker: re.Pattern[str]) -> None:
        assert process.stdout is not None
        with open(log, "a") as sink:
            for line in process.stdout:
                sink.write(line)
                sink.flush()
                if line.strip():
                    self.last_line = line.strip()
                if marker.search(line) and not self.plugged:
                    self.plugged = True
                    self._settled.set()
        self._settled.set()

    def wait(self, timeout: float) -> bool:
        """Whether the marker or the end of the output came within ``timeout``."""
        return self._settled.wait(timeout)

    def join(self) -> None:
        self._thread.join(KILL_GRACE_S)


def _wait_plugged(process: subprocess.Popen[str], watch: _OutputWatch, name: str) -> None:
    if not watch.wait(PLUG_TIMEOUT_S):
        last = one_line(watch.last_line) or "no output"
        raise BenchError(f"{name} did not plug within {PLUG_TIMEOUT_S:g} s: {last}")
    if not watch.plugged:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(KILL_GRACE_S)
        last = one_line(watch.last_line) or "no output"
        raise BenchError(f"{name} exited {process.returncode} before plugging: {last}")


TOOLS = Path(__file__).resolve().parent
# Where ``run-tier --bench --baseline REV`` puts the ``src`` of an earlier revision, so that
# the bench measures it beside this one, in the same guest, on the same devices.
BASELINE_SRC = TOOLS.parents[1] / "build" / "baseline" / "src"


def baseline_src() -> Path | None:
    """The earlier revision's ``src``, if the bench was given one."""
    package = BASELINE_SRC / "usbip_gadget"
    return BASELINE_SRC if (package / "__init__.py").is_file() else None


def bridge_argv(
    server: str,
    busid: str | None,
    *extra: str,
    src: Path | None = None,
    profile: Path | None = None,
) -> list[str]:
    """``usbip-gadget attach`` plugging into BRIDGE_UDC: this checkout's, or the package in
    ``src`` (a baseline); with ``profile`` under cProfile, its statistics written there.
    Without ``busid``, ``server`` is a usbredir:// address."""
    device = [busid] if busid is not None else []
    attach = ["attach", server, *device, "--udc", BRIDGE_UDC, "--name", "bench", *extra]
    prefix = ["env", f"PYTHONPATH={src}"] if src is not None else []
    if profile is not None:
        return [*prefix, sys.executable, str(TOOLS / "_profiled_cli.py"), str(profile), *attach]
    if src is not None:
        return [*prefix, sys.executable, "-m", "usbip_gadget", *attach]
    return [str(Path(sys.executable).parent / "usbip-gadget"), *attach]


@contextlib.contextmanager
def bridged(argv: Sequence[str], udc: str, log: Path) -> Iterator[Path]:
    """Runs the bridge until the block ends; yields the device it plugged into ``udc``'s bus."""
    buses = udc_host_buses(udc)
    name = " ".join([Path(argv[0]).name, argv[1]])
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    watch = _OutputWatch(process, log, PLUGGED)
    try:
        _wait_plugged(process, watch, name)
        yield wait_for(
            lambda: the_configured_device(buses),
            SETTLE_TIMEOUT_S,
            f"the bridged device configured on bus {sorted(buses)}",
        )
    finally:
        stop(process)
        watch.join()
        wait_until(lambda: not usb_devices(buses), SETTLE_TIMEOUT_S, "the bridged device gone")
    if process.returncode != 0:
        last = one_line(watch.last_line)
        raise BenchError(f"{name} exited {process.returncode} after SIGTERM: {last}")


@contextlib.contextmanager
def netem_delay(one_way_ms: int) -> Iterator[None]:
    """``tc qdisc add dev lo root netem delay N ms`` for the block (nothing for 0)."""
    if one_way_ms == 0:
        yield
        return
    run(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", f"{one_way_ms}ms"])
    try:
        yield
    finally:
        run(["tc", "qdisc", "del", "dev", "lo", "root"])


def _attempt(done: list[str], what: str, argv: Sequence[str]) -> None:
    try:
        run(argv)
        done.append(what)
    except BenchError as exc:
        done.append(f"{what} failed: {exc}")


def _unbind_gadgets(done: list[str]) -> None:
    for udc in sorted(GADGETS.glob("*/UDC")) if GADGETS.is_dir() else []:
        if read_text(udc):
            try:
                _write(udc, "\n")
                done.append(f"unbound gadget {udc.parent.name}")
            except OSError as exc:
                done.append(f"unbinding gadget {udc.parent.name} failed: {exc.strerror}")


def _remove_gadgets(done: list[str]) -> None:
    for gadget in sorted(GADGETS.iterdir()) if GADGETS.is_dir() else []:
        steps = [p for p in sorted(gadget.glob("configs/*/*")) if p.is_symlink()]
        steps += sorted(gadget.glob("configs/*/strings/*")) + sorted(gadget.glob("configs/*"))
        steps += sorted(gadget.glob("functions/*")) + sorted(gadget.glob("strings/*"))
        try:
            for step in [*steps, gadget]:
                if step.is_symlink():
                    step.unlink()
                else:
                    step.rmdir()
            done.append(f"removed gadget {gadget.name}")
        except OSError as exc:
            done.append(f"removing gadget {gadget.name} failed: {exc}")


def scrub() -> list[str]:
    """Removes whatever the bench left behind; says what it had to do ([] when nothing)."""
    done: list[str] = []
    if "netem" in run(["tc", "qdisc", "show", "dev", "lo"]):
        _attempt(done, "removed netem from lo", ["tc", "qdisc", "del", "dev", "lo", "root"])
    for port in sorted(_vhci_ports_in_use()):
        _attempt(done, f"detached vhci port {port}", ["usbip", "detach", "-p", str(port)])
    held = sorted(p.name for p in USBIP_HOST.glob("*-*")) if USBIP_HOST.is_dir() else []
    for busid in held:
        _attempt(done, f"unbound {busid} from usbip-host", ["usbip", "unbind", "-b", busid])
    _unbind_gadgets(done)
    for line in Path("/proc/mounts").read_text().splitlines():
        if line.split()[2] == "functionfs":
            mountpoint = line.split()[1]
            _attempt(done, f"unmounted {mountpoint}", ["umount", mountpoint])
    _remove_gadgets(done)
    return done
