"""make bench: one USB disk measured three ways inside the kernel tier's guest, then generic
bulk transfers four ways.

    bench.py OUT

A configfs mass-storage gadget on dummy_udc.0 is read and written (a) directly, by the host side
of its own bus; (b) through the kernel's vhci-hcd, exported by usbipd; (c) through
``usbip-gadget attach``, which replays it on dummy_udc.1. Each network path is measured on plain
loopback and with netem's delay, and each path's control round trips are counted. The second
table (``_bench_bulk``) does the same with usbtest against a SourceSink gadget, and adds the
bridge with ``--bulk-urbs adaptive``.

Progress goes to stdout; the table to OUT/bench.txt. If the bed cannot be built, the reason goes
to OUT/bench-failure as one line and the exit status is 1. Run by tools/kernel/run-tier --bench.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the kernel tier's helpers

import _bench_bulk as bulk
import _bench_redir as redir
import _bench_stack as stack
from _bench_io import DISK_SIZE, claimed_interface, control_rate, disk_throughput
from _bench_sysfs import (
    BenchError,
    block_device,
    one_line,
    storage_interface,
    usbfs_node,
)
from _bench_table import (
    BRIDGE,
    BRIDGE_BASE,
    DELAYS_MS,
    DIRECT,
    REDIR,
    VHCI,
    Results,
    aligned,
    say,
)
from tests.kernel._sysfs import wait_for

PATHS = (DIRECT, VHCI, BRIDGE, REDIR)
TABLES = ("disk", "bulk")
READ, WRITE, CONTROL = "read MB/s", "write MB/s", "control/s"
METRICS = (READ, WRITE, CONTROL)
CONTROL_SECONDS = 2.0
DISK_TIMEOUT_S = 60.0
SCRATCH = Path("/tmp/usbip-gadget-bench")

OpenPath = Callable[[], AbstractContextManager[Path]]


def _disk_results(baseline: Path | None) -> Results:
    if baseline is None:
        return Results(PATHS, (("bridge/vhci", BRIDGE), ("usbredir/vhci", REDIR)))
    ratios = (("bridge/vhci", BRIDGE), ("usbredir/vhci", REDIR), ("base/vhci", BRIDGE_BASE))
    return Results((*PATHS, BRIDGE_BASE), ratios)


@dataclass
class Report:
    """Both tables, and the notes about the run as a whole (teardown, cleanup)."""

    disk: Results = field(default_factory=lambda: _disk_results(stack.baseline_src()))
    bulk: Results = field(default_factory=bulk.new_results)
    notes: list[str] = field(default_factory=list)
    tables: tuple[str, ...] = ("disk", "bulk")


@dataclass(frozen=True)
class Bench:
    """Measures one path after another into ``results``."""

    results: Results
    backing: Path

    def path(self, name: str, delays: Sequence[int], open_path: OpenPath) -> None:
        say(f"{name}: setting up")
        try:
            with open_path() as device:
                self._disk(name, delays, device)
                self._control(name, delays, device)
        except (BenchError, OSError) as exc:
            self.results.fail(name, delays, METRICS, f"{name}: {one_line(str(exc))}")

    def _disk(self, name: str, delays: Sequence[int], device: Path) -> None:
        disk = wait_for(
            lambda: block_device(device, DISK_SIZE),
            DISK_TIMEOUT_S,
            f"a {DISK_SIZE >> 20} MiB disk on {device.name}",
        )
        for delay in delays:
            self._record(name, delay, (WRITE, READ), lambda: self._throughput(disk))

    def _throughput(self, disk: Path) -> tuple[float, float]:
        figures = disk_throughput(disk, self.backing, SCRATCH)
        return figures.write, figures.read

    def _control(self, name: str, delays: Sequence[int], device: Path) -> None:
        interface = storage_interface(device)
        with claimed_interface(usbfs_node(device), interface) as fd:
            for delay in delays:
                self._record(
                    name, delay, (CONTROL,), lambda: (control_rate(fd, interface, CONTROL_SECONDS),)
                )

    def _record(
        self, name: str, delay: int, metrics: Sequence[str], measure: Callable[[], Sequence[float]]
    ) -> None:
        with stack.netem_delay(delay // 2):
            try:
                values = measure()
            except (BenchError, OSError) as exc:
                note = f"{name}, {delay} ms: {one_line(str(exc))}"
                self.results.fail(name, (delay,), metrics, note)
                return
        for metric, value in zip(metrics, values, strict=True):
            self.results.put(name, delay, metric, value)
        figures = (f"{metric} {self.results.text(name, delay, metric)}" for metric in metrics)
        say(f"{name}, {delay} ms: {', '.join(figures)}")


def _network_paths(bench: Bench, source: Path, out: Path) -> None:
    """The vhci-hcd and bridge columns: both import the source disk from one usbipd export."""
    with contextlib.ExitStack() as shared:
        try:
            server = shared.enter_context(stack.usbipd(out / "usbipd.log"))
            busid = shared.enter_context(stack.exported(source.name))
        except BenchError as exc:
            for name in (VHCI, BRIDGE):
                bench.results.fail(name, DELAYS_MS, METRICS, f"{name}: {one_line(str(exc))}")
            return
        bench.path(VHCI, DELAYS_MS, lambda: stack.vhci_import(server, busid))
        bench.path(
            BRIDGE,
            DELAYS_MS,
            lambda: stack.bridged(
                stack.bridge_argv(server, busid), stack.BRIDGE_UDC, out / "bridge.log"
            ),
        )
        base = stack.baseline_src()
        if base is not None:
            argv = stack.bridge_argv(server, busid, src=base)
            log = out / "bridge-base.log"
            bench.path(BRIDGE_BASE, DELAYS_MS, lambda: stack.bridged(argv, stack.BRIDGE_UDC, log))
    # The same disk from usbredirect (usbredir), once usbip-host has let it go.
    bench.path(REDIR, DELAYS_MS, lambda: redir.redirected(out / "usbredir.log"))


def run_bench(report: Report, out: Path) -> None:
    SCRATCH.mkdir(exist_ok=True)
    backing = SCRATCH / "disk.img"
    backing.write_bytes(bytes(DISK_SIZE))  # allocated in full, so no path pays for it
    say("loading modules")
    stack.prepare()
    bench = Bench(report.disk, backing)
    if "disk" not in report.tables:
        bulk.run_bulk(report.bulk, out)
        return
    try:
        with stack.source_disk(backing, stack.SOURCE_UDC) as source:
            bench.path(DIRECT, (0,), lambda: contextlib.nullcontext(source))
            _network_paths(bench, source, out)
    except (BenchError, OSError) as exc:
        if not report.disk.cells:
            raise
        report.notes.append(f"mass-storage teardown: {one_line(str(exc))}")
        say(report.notes[-1])
    if "bulk" in report.tables:
        bulk.run_bulk(report.bulk, out)


def _scrub(report: Report) -> None:
    try:
        cleaned = stack.scrub()
    except (BenchError, OSError) as exc:
        cleaned = [f"failed: {one_line(str(exc))}"]
    if cleaned:
        report.notes.append("cleanup after the bench: " + "; ".join(cleaned))
        say(report.notes[-1])
    shutil.rmtree(SCRATCH, ignore_errors=True)


def run_and_scrub(report: Report, out: Path) -> str | None:
    """Runs the bench, then the safety net; returns why the bench could not run at all, if so."""
    try:
        run_bench(report, out)
    except (BenchError, OSError) as exc:
        reason = one_line(str(exc))
        if not report.disk.cells and not report.bulk.cells:
            return reason
        report.notes.append(f"teardown: {reason}")
    finally:
        _scrub(report)
    return None


def _baseline_line() -> list[str]:
    base = stack.baseline_src()
    if base is None:
        return []
    revision = (base.parent / "REVISION").read_text(encoding="utf-8").strip()
    return [f"bridge (base): attach of {revision}, measured in the same run"]


def render(report: Report, seconds: float) -> str:
    now = datetime.datetime.now(datetime.UTC)
    lines = [
        f"usbip-gadget bench: kernel {platform.release()}, {now:%Y-%m-%d %H:%M} UTC,"
        f" {os.cpu_count()} CPUs",
        *_baseline_line(),
        "",
    ]
    if "disk" in report.tables:
        lines += [
            f"{DISK_SIZE >> 20} MiB mass-storage gadget; dd, 1 MiB blocks, O_DIRECT: write, then"
            " read back and verified (MB = 10^6 bytes)",
            f"control/s: GET_MAX_LUN round trips through usbfs for {CONTROL_SECONDS:g} s;"
            f" {DELAYS_MS[1]} ms: netem delay of {DELAYS_MS[1] // 2} ms each way on lo",
            "",
            *aligned(report.disk.rows(DELAYS_MS, METRICS)),
            "",
            *report.disk.notes,
            "goal: bridge/vhci >= 1.0x at 0 ms and >= 2x at 10 ms",
            "",
        ]
    if "bulk" in report.tables:
        lines += [*bulk.render_lines(report.bulk), ""]
    lines += [*report.notes, f"bench time {seconds:.0f} s"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where bench.txt and the logs go")
    parser.add_argument(
        "--only", choices=TABLES, help="measure one table (KERNEL_TIER_ONLY=disk|bulk run-tier)"
    )
    args = parser.parse_args()
    out: Path = args.out
    report = Report(tables=(args.only,) if args.only else TABLES)
    started = time.monotonic()
    fatal = run_and_scrub(report, out)
    if fatal is not None:
        (out / "bench-failure").write_text(fatal + "\n")
        print(f"bench: {fatal}", file=sys.stderr)
        return 1
    (out / "bench.txt").write_text(render(report, time.monotonic() - started), encoding="utf-8")
    say(f"table written to {out / 'bench.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
