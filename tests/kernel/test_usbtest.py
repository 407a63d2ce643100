"""Exactness through the bridge, judged by the kernel's own host-side test driver.

usbtest (drivers/usb/misc/usbtest.c, loaded with ``pattern=1``) runs its bulk, scatter-gather,
control, unlink, halt and data-toggle cases against a configfs SourceSink gadget (0525:a4a0,
``pattern`` 1) on dummy_udc.0, exported by the real usbipd. With pattern 1, usbtest checks every
byte of its simple reads (its scatter-gather reads, 6 and 8, it does not check), and the gadget
every byte it receives (a wrong one halts its OUT endpoint and is logged as "bad OUT byte"); a
read URB that comes back short fails too. So a packet lost, duplicated, reordered, split or
merged fails the case.

Each case runs first through the kernel's own import of that export (vhci-hcd), which says what
this stack can do, then through ``usbip-gadget attach`` on dummy_udc.1 with the backend ``auto``
picks, with the other backend, and with ``--bulk-urbs adaptive``. Every case that passes through
vhci-hcd must pass through the bridge; one that fails through vhci-hcd is reported and not held
against the bridge. The tables go to the test output and to build/kernel/usbtest.txt.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import _bridge, _gadget, _sysfs, _usbip, _usbtest

pytestmark = pytest.mark.kernel

LENGTH = 4096  # bytes per URB: eight high-speed bulk packets
VARY = 512  # a whole packet, so every varied length is whole packets too
SGLEN = 4  # scatter-gather entries (5-8)
CONTROL_QUEUE = 16  # control URBs kept queued in test 10: each of its 16 subcases once
CORE = (1, 2, 3, 4)  # simple bulk writes and reads, fixed and varied lengths
BIND_TIMEOUT_S = 30.0
RELEASE_TIMEOUT_S = 30.0
UNBIND_TIMEOUT_S = 10.0
UDC_CLASS = Path("/sys/class/udc")
KMSG = Path("/dev/kmsg")
RECORD = "usbtest.txt"
BAD_OUT_BYTE = "bad OUT byte"  # f_sourcesink.c, when a received byte breaks the pattern
KERNEL_LINES = 12  # kernel log lines shown per failed case
ADAPTIVE = ("--bulk-urbs", "adaptive")
VID, PID = _gadget.VID_NETCHIP, _gadget.PID_GADGET_ZERO


@dataclass(frozen=True)
class Case:
    """One usbtest ioctl: ``test`` (usbtest.c's test_num) and its parameters."""

    test: int
    what: str
    iterations: int
    length: int = 0
    vary: int = 0
    sglen: int = 0

    def parameters(self) -> str:
        words = [f"x{self.iterations}"]
        words += [f"len {self.length}"] if self.length else []
        words += [f"vary {self.vary}"] if self.vary else []
        words += [f"sglen {self.sglen}"] if self.sglen else []
        return " ".join(words)


# In this order. Tests 12 and 24 (unlinked writes) are left out: they leave vhci-hcd in an
# uninterruptible wait on this kernel.
CASES = (
    Case(0, "nop", 1),
    Case(1, "bulk write", 8, LENGTH),
    Case(2, "bulk read", 8, LENGTH),
    Case(3, "bulk write, varied lengths", 8, LENGTH, VARY),
    Case(4, "bulk read, varied lengths", 8, LENGTH, VARY),
    Case(5, "sg write", 2, LENGTH, sglen=SGLEN),
    Case(6, "sg read", 2, LENGTH, sglen=SGLEN),
    Case(7, "sg write, varied lengths", 2, LENGTH, VARY, SGLEN),
    Case(8, "sg read, varied lengths", 2, LENGTH, VARY, SGLEN),
    Case(9, "ch9 standard requests", 2),
    Case(10, "queued control requests", 2, sglen=CONTROL_QUEUE),
    Case(11, "unlinked reads", 2, LENGTH),
    Case(13, "endpoint halt set and cleared", 2),
    Case(17, "bulk write, odd address", 4, LENGTH),
    Case(18, "bulk read, odd address", 4, LENGTH),
    Case(19, "bulk write, odd address, premapped", 4, LENGTH),
    Case(20, "bulk read, odd address, premapped", 4, LENGTH),
    Case(29, "data toggle cleared between writes", 4),
)


@dataclass(frozen=True)
class Outcome:
    """What one case did on one path."""

    case: Case
    error: str | None  # None: passed
    seconds: float  # the ioctl alone when it succeeded, else the whole attempt
    kernel: tuple[str, ...] = ()  # what the kernel logged meanwhile
    ran: bool = True

    @property
    def passed(self) -> bool:
        return self.error is None

    def cell(self) -> str:
        if not self.ran:
            return "not run"
        return f"{'ok' if self.passed else 'FAIL'} {self.seconds:6.2f} s"

    def details(self, where: str) -> str:
        lines = [f"test {self.case.test} ({self.case.what}) through {where}: {self.error}"]
        lines += [f"    kernel: {line}" for line in self.kernel[-KERNEL_LINES:]]
        return "\n".join(lines)


# -- the kernel log ---------------------------------------------------------------------------


class KernelLog:
    """The kernel's log from the moment it was opened: /dev/kmsg gives one record per read."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.seen: list[str] = []

    def new_lines(self) -> list[str]:
        """The messages logged since the last call (each record's first line)."""
        lines = []
        while True:
            try:
                record = os.read(self._fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:  # older records were overwritten; reading resumes after them
                continue
            if not record:
                break
            _prefix, _, message = record.decode(errors="replace").partition(";")
            lines.append(message.split("\n", 1)[0])
        self.seen += lines
        return lines


@contextlib.contextmanager
def kernel_log() -> Iterator[KernelLog]:
    fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.lseek(fd, 0, os.SEEK_END)
        yield KernelLog(fd)
    finally:
        os.close(fd)


# -- running the cases ------------------------------------------------------------------------


def _usbtest_node(device: Path) -> Path:
    """Waits until usbtest holds the device's interface 0; its usbfs node. Fails unless that
    interface has a bulk IN and a bulk OUT endpoint: without them usbtest would answer the bulk
    cases with success having moved nothing."""
    interface = device / f"{device.name}:{_sysfs.read_text(device / 'bConfigurationValue')}.0"

    def ready() -> Path | None:
        if _sysfs.interface_drivers(device).get(interface.name) != "usbtest":
            return None
        node = _sysfs.usbfs_node(device)
        return node if node is not None and node.exists() else None

    try:
        node = _sysfs.wait_for(ready, BIND_TIMEOUT_S, f"usbtest bound to {interface.name}")
    except TimeoutError:
        pytest.fail(
            f"usbtest did not take {interface.name} within {BIND_TIMEOUT_S:g} s"
            f" (drivers: {_sysfs.interface_drivers(device)})",
            pytrace=False,
        )
    bulk = {
        _sysfs.read_text(endpoint / "direction")
        for endpoint in interface.glob("ep_*")
        if _sysfs.read_text(endpoint / "type") == "Bulk"
    }
    assert {"in", "out"} <= bulk, f"{interface.name} has no bulk IN and OUT pair: {bulk}"
    return node


def _run_cases(node: Path, log: KernelLog) -> list[Outcome]:
    """Every case in order. After a case outlives its deadline the others are not run: its
    process may still hold the device, and they would wait on it."""
    outcomes: list[Outcome] = []
    log.new_lines()
    for index, case in enumerate(CASES):
        began = time.monotonic()
        try:
            run = _usbtest.run_test(
                node, case.test, case.iterations, case.length, case.vary, case.sglen
            )
        except _usbtest.UsbtestTimeout as exc:
            outcomes.append(
                Outcome(case, str(exc), time.monotonic() - began, tuple(log.new_lines()))
            )
            reason = f"not run: test {case.test} timed out and may still hold the device"
            outcomes += [Outcome(later, reason, 0.0, ran=False) for later in CASES[index + 1 :]]
            break
        except _usbtest.UsbtestError as exc:
            outcomes.append(
                Outcome(case, str(exc), time.monotonic() - began, tuple(log.new_lines()))
            )
        else:
            outcomes.append(Outcome(case, None, run.wall_s, tuple(log.new_lines())))
    return outcomes


def _bad_bytes(log: KernelLog) -> list[str]:
    """The gadget's reports of a received byte that broke the pattern, so far."""
    log.new_lines()
    return [line for line in log.seen if BAD_OUT_BYTE in line]


# -- reporting --------------------------------------------------------------------------------


def _table(columns: Sequence[tuple[str, Sequence[Outcome]]]) -> list[str]:
    """One row per case: its parameters and each path's result and time."""
    header = f"{'test':>4}  {'what':<36} {'parameters':<28}"
    header += "".join(f" {name:<14}" for name, _ in columns)
    lines = [header.rstrip()]
    for row, case in enumerate(CASES):
        line = f"{case.test:>4}  {case.what:<36} {case.parameters():<28}"
        line += "".join(f" {outcomes[row].cell():<14}" for _, outcomes in columns)
        lines.append(line.rstrip())
    return lines


def _report(title: str, lines: Sequence[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Prints the lines in the test output and appends them to build/kernel/usbtest.txt."""
    text = "\n".join([f"--- {title}", *lines]) + "\n"
    with capsys.disabled():
        print(f"\n{text}", end="", flush=True)
    out = os.environ.get("KERNEL_TIER_OUT")
    if out:
        with open(Path(out) / RECORD, "a") as record:
            record.write(text)


# -- vhci-hcd: what this stack can do ---------------------------------------------------------


class Stopwatch:
    """Where a test's time went, one lap per phase."""

    def __init__(self) -> None:
        self._began = self._last = time.monotonic()
        self._laps: list[str] = []

    def lap(self, what: str) -> None:
        now = time.monotonic()
        self._laps.append(f"{what} {now - self._last:.1f} s")
        self._last = now

    def summary(self) -> str:
        return f"{self._last - self._began:.1f} s: " + ", ".join(self._laps)


@dataclass(frozen=True)
class Baseline:
    """The cases through vhci-hcd, and what ``plan`` said of the device."""

    outcomes: list[Outcome]
    bad_bytes: list[str]
    plan: dict[str, Any]
    timing: str

    def passed(self, test: int) -> bool:
        return any(o.case.test == test and o.passed for o in self.outcomes)


def _plan(server: str, busid: str) -> dict[str, Any]:
    """``plan --json`` for the device; returns once usbip-host offers the device again."""
    done = _bridge.run_cli(["plan", server, busid, "--udc", _bridge.BRIDGE_UDC, "--json"])
    assert done.returncode == 0, f"plan exited {done.returncode}: {done.stdout} {done.stderr}"
    plan = json.loads(done.stdout)
    assert isinstance(plan, dict), done.stdout
    assert plan["refused"] is None, plan
    assert plan["backend"] in ("functionfs", "gadgetfs"), plan
    _sysfs.wait_until(
        lambda: _usbip.stub_status(busid) == _usbip.SDEV_ST_AVAILABLE,
        RELEASE_TIMEOUT_S,
        f"usbip-host offering {busid} again after plan",
    )
    return plan


def _check_pattern() -> None:
    parameter = Path(_usbtest.PATTERN_PARAMETER)
    if _sysfs.read_text(parameter) != "1":  # modprobe keeps a loaded module's parameters
        parameter.write_text("1\n")
    value = _sysfs.read_text(parameter)
    assert value == "1", f"usbtest's pattern is {value!r}, not 1: no byte would be checked"


@pytest.fixture(scope="module")
def vhci_baseline(usbipd: str) -> Baseline:
    """Every case through ``usbip attach`` (vhci-hcd) of the exported SourceSink gadget, then
    ``plan`` for it; everything is torn down again before the first test starts."""
    _check_pattern()
    clock = Stopwatch()
    with (
        kernel_log() as log,
        _gadget.sourcesink_gadget() as source,
        _usbip.exported(source.busid) as busid,
    ):
        with _usbip.attached(usbipd, busid, VID, PID) as imported:
            node = _usbtest_node(imported.device)
            clock.lap("source, export, import and usbtest bound")
            outcomes = _run_cases(node, log)
            clock.lap(f"cases (the ioctls alone {sum(o.seconds for o in outcomes):.1f} s)")
        clock.lap("detach")
        plan = _plan(usbipd, busid)
        clock.lap("plan")
        bad_bytes = _bad_bytes(log)
    clock.lap("teardown")
    return Baseline(outcomes, bad_bytes, plan, clock.summary())


@pytest.mark.timeout(600)
def test_usbtest_cases_through_vhci(
    vhci_baseline: Baseline, capsys: pytest.CaptureFixture[str]
) -> None:
    """The simple bulk cases must pass through the kernel's own import: else the bed, not the
    bridge, is what is broken."""
    baseline = vhci_baseline
    failed = [o for o in baseline.outcomes if not o.passed]
    lines = _table([("vhci-hcd", baseline.outcomes)])
    lines.append(f"plan: backend {baseline.plan['backend']}")
    lines += [f"plan: FunctionFS refuses: {r}" for r in baseline.plan["functionfs_refuses"]]
    lines += [
        f"failed through vhci-hcd, so not asserted through the bridge: {o.details('vhci-hcd')}"
        for o in failed
    ]
    lines.append(f"vhci-hcd: {baseline.timing}")
    _report("usbtest through vhci-hcd", lines, capsys)
    core = [o.details("vhci-hcd") for o in baseline.outcomes if o.case.test in CORE and o.error]
    assert not core, "\n".join(core)
    assert not baseline.bad_bytes, baseline.bad_bytes


# -- the bridge -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Configuration:
    """One way to run ``attach``: which backend (None: ``auto``'s choice) and extra options."""

    name: str
    backend: str | None
    extra: tuple[str, ...] = ()


CONFIGURATIONS = (
    Configuration("functionfs", "functionfs"),
    Configuration("gadgetfs", "gadgetfs"),
    Configuration("adaptive", None, ADAPTIVE),
)


def _argv(configuration: Configuration, plan: dict[str, Any]) -> tuple[str, ...] | None:
    """``attach``'s options for the configuration, or None when FunctionFS cannot express the
    device. The backend ``auto`` picks runs without ``--backend``, so ``auto`` is what runs."""
    if configuration.backend is None or configuration.backend == plan["backend"]:
        return configuration.extra
    if configuration.backend == "functionfs" and plan["functionfs_refuses"]:
        return None
    return ("--backend", configuration.backend, *configuration.extra)


def _wait_udc_free() -> None:
    """Closing gadgetfs's ep0 file unregisters its gadget driver, which frees the controller."""
    function = UDC_CLASS / _bridge.BRIDGE_UDC / "function"
    _sysfs.wait_until(
        lambda: _sysfs.read_text(function) == "",
        UNBIND_TIMEOUT_S,
        f"{_bridge.BRIDGE_UDC} free again ({function}: {_sysfs.read_text(function)!r})",
    )


@pytest.mark.timeout(600)
@pytest.mark.parametrize("configuration", CONFIGURATIONS, ids=lambda c: c.name)
def test_usbtest_cases_through_the_bridge(
    configuration: Configuration,
    vhci_baseline: Baseline,
    usbipd: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    baseline = vhci_baseline
    backend = configuration.backend or baseline.plan["backend"]
    extra = _argv(configuration, baseline.plan)
    if extra is None:
        refusals = "; ".join(baseline.plan["functionfs_refuses"])
        note = f"FunctionFS cannot express the device, so nothing runs through it: {refusals}"
        _report(f"usbtest through the bridge ({configuration.name})", [note], capsys)
        assert baseline.plan["backend"] == "gadgetfs", baseline.plan
        return
    clock = Stopwatch()
    log_path = tmp_path / "attach.log"
    with (
        kernel_log() as log,
        _gadget.sourcesink_gadget() as source,
        _usbip.exported(source.busid) as busid,
        _bridge.bridged(usbipd, busid, VID, PID, log_path, extra) as bridge,
    ):
        plugged = re.search(r"^.*\bplugged\b.*\((\w+)\)$", bridge.text(), re.MULTILINE)
        assert plugged, bridge.text()
        assert plugged[1] == backend, f"expected {backend}: {plugged[0]}"
        node = _usbtest_node(bridge.device)
        clock.lap("source, export, attach and usbtest bound")
        outcomes = _run_cases(node, log)
        clock.lap(f"cases (the ioctls alone {sum(o.seconds for o in outcomes):.1f} s)")
        _bridge.stop(bridge)
        if backend == "gadgetfs":
            _wait_udc_free()
        bad_bytes = _bad_bytes(log)  # the bridge has stopped: what it carried has arrived
    clock.lap("stop and teardown")
    attach_log = log_path.read_text(errors="replace")

    title = f"attach {' '.join(extra)}".rstrip() + f" ({backend})"
    lines = _table([("vhci-hcd", baseline.outcomes), (configuration.name, outcomes)])
    owed = [o for o in outcomes if baseline.passed(o.case.test)]
    failures = [o.details(title) for o in owed if not o.passed]
    excused = [o for o in outcomes if not baseline.passed(o.case.test)]
    lines += [
        f"not asserted (failed through vhci-hcd): test {o.case.test} passed here"
        if o.passed
        else f"not asserted (failed through vhci-hcd): {o.details(title)}"
        for o in excused
    ]
    lines += failures
    lines.append(f"{configuration.name}: {clock.summary()}")
    _report(f"usbtest through the bridge: {title}", lines, capsys)

    assert bridge.exit_code == 0, f"attach exited {bridge.exit_code}:\n{attach_log}"
    assert "Traceback" not in attach_log, attach_log
    assert not bad_bytes, "the gadget received bytes out of pattern:\n" + "\n".join(bad_bytes)
    assert not failures, "\n".join([*failures, "attach's log:", attach_log])
