"""make bench: one USB disk measured three ways inside the kernel tier's guest.

    bench.py OUT

A configfs mass-storage gadget on dummy_udc.0 is read and written (a) directly, by the host side
of its own bus; (b) through the kernel's vhci-hcd, exported by usbipd; (c) through
``usbip-gadget attach``, which replays it on dummy_udc.1. Each network path is measured on plain
loopback and with netem's delay, and each path's control round trips are counted.

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

import _bench_stack as stack
from _bench_io import DISK_SIZE, claimed_interface, control_rate, disk_throughput
from _bench_sysfs import (
    BenchError,
    block_device,
    one_line,
    storage_interface,
    usbfs_node,
)
from tests.kernel._sysfs import wait_for

DIRECT, VHCI, BRIDGE = "direct", "vhci-hcd", "bridge"
PATHS = (DIRECT, VHCI, BRIDGE)
DELAYS_MS = (0, 10)  # round trip; netem delays each direction by half
READ, WRITE, CONTROL = "read MB/s", "write MB/s", "control/s"
METRICS = (READ, WRITE, CONTROL)
SOURCE_UDC, BRIDGE_UDC = "dummy_udc.0", "dummy_udc.1"
CONTROL_SECONDS = 2.0
DISK_TIMEOUT_S = 60.0
SCRATCH = Path("/tmp/usbip-gadget-bench")
NOT_MEASURED, MISSING = "—", "n/a"

Cell = float | str
OpenPath = Callable[[], AbstractContextManager[Path]]


def say(text: str) -> None:
    print(f"bench: {text}", flush=True)


@dataclass
class Results:
    """The table's cells by (path, round trip in ms, metric), and a note for every n/a."""

    cells: dict[tuple[str, int, str], Cell] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def put(self, path: str, delay: int, metric: str, value: float) -> None:
        self.cells[path, delay, metric] = value

    def fail(self, path: str, delays: Sequence[int], metrics: Sequence[str], note: str) -> None:
        """Marks the cells not yet filled as n/a, and says why."""
        for delay in delays:
            for metric in metrics:
                self.cells.setdefault((path, delay, metric), MISSING)
        self.notes.append(note)
        say(f"n/a: {note}")

    def text(self, path: str, delay: int, metric: str) -> str:
        cell = self.cells.get((path, delay, metric), NOT_MEASURED if path == DIRECT else MISSING)
        if isinstance(cell, str):
            return cell
        return f"{cell:.0f}" if metric == CONTROL else f"{cell:.1f}"

    def row(self, delay: int, metric: str) -> list[str]:
        cells = [self.text(path, delay, metric) for path in PATHS]
        return [metric, f"{delay} ms", *cells, self.ratio(delay, metric)]

    def ratio(self, delay: int, metric: str) -> str:
        bridge = self.cells.get((BRIDGE, delay, metric))
        vhci = self.cells.get((VHCI, delay, metric))
        if isinstance(bridge, float) and isinstance(vhci, float) and vhci > 0:
            return f"{bridge / vhci:.2f}x"
        return MISSING


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


def _bridge_argv(server: str, busid: str) -> list[str]:
    command = str(Path(sys.executable).parent / "usbip-gadget")
    return [command, "attach", server, busid, "--udc", BRIDGE_UDC, "--name", "bench"]


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
            lambda: stack.bridged(_bridge_argv(server, busid), BRIDGE_UDC, out / "bridge.log"),
        )


def run_bench(results: Results, out: Path) -> None:
    SCRATCH.mkdir(exist_ok=True)
    backing = SCRATCH / "disk.img"
    backing.write_bytes(bytes(DISK_SIZE))  # allocated in full, so no path pays for it
    say("loading modules")
    stack.prepare()
    bench = Bench(results, backing)
    with stack.source_disk(backing, SOURCE_UDC) as source:
        bench.path(DIRECT, (0,), lambda: contextlib.nullcontext(source))
        _network_paths(bench, source, out)


def _scrub(results: Results) -> None:
    try:
        cleaned = stack.scrub()
    except (BenchError, OSError) as exc:
        cleaned = [f"failed: {one_line(str(exc))}"]
    if cleaned:
        results.notes.append("cleanup after the bench: " + "; ".join(cleaned))
        say(results.notes[-1])
    shutil.rmtree(SCRATCH, ignore_errors=True)


def run_and_scrub(results: Results, out: Path) -> str | None:
    """Runs the bench, then the safety net; returns why the bench could not run at all, if so."""
    try:
        run_bench(results, out)
    except (BenchError, OSError) as exc:
        reason = one_line(str(exc))
        if not results.cells:
            return reason
        results.notes.append(f"teardown: {reason}")
    finally:
        _scrub(results)
    return None


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """The first column left-aligned, the others right-aligned, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]


def render(results: Results, seconds: float) -> str:
    now = datetime.datetime.now(datetime.UTC)
    rows: list[list[str]] = [["", "round trip", *PATHS, "bridge/vhci"]]
    rows += [results.row(delay, metric) for delay in DELAYS_MS for metric in METRICS]
    lines = [
        f"usbip-gadget bench: kernel {platform.release()}, {now:%Y-%m-%d %H:%M} UTC,"
        f" {os.cpu_count()} CPUs",
        f"{DISK_SIZE >> 20} MiB mass-storage gadget; dd, 1 MiB blocks, O_DIRECT: write, then read"
        " back and verified (MB = 10^6 bytes)",
        f"control/s: GET_MAX_LUN round trips through usbfs for {CONTROL_SECONDS:g} s;"
        f" {DELAYS_MS[1]} ms: netem delay of {DELAYS_MS[1] // 2} ms each way on lo",
        "",
        *_aligned(rows),
        "",
        *results.notes,
        "goal: bridge/vhci >= 1.0x at 0 ms and >= 2x at 10 ms",
        f"bench time {seconds:.0f} s",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where bench.txt and the logs go")
    out: Path = parser.parse_args().out
    results = Results()
    started = time.monotonic()
    fatal = run_and_scrub(results, out)
    if fatal is not None:
        (out / "bench-failure").write_text(fatal + "\n")
        print(f"bench: {fatal}", file=sys.stderr)
        return 1
    (out / "bench.txt").write_text(render(results, time.monotonic() - started), encoding="utf-8")
    say(f"table written to {out / 'bench.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
