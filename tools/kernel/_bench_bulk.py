"""make bench's generic bulk table: usbtest against a SourceSink gadget, four ways.

A configfs SourceSink gadget (0525:a4a0, ``pattern`` 1) on dummy_udc.0 is driven by the kernel's
host-side ``usbtest`` driver (``pattern=1``): test 2 reads its bulk IN endpoint, test 1 writes its
bulk OUT endpoint, and every byte is checked on arrival. Paths: (a) direct, on the source's own
bus; (b) through usbipd and vhci-hcd; (c) through ``usbip-gadget attach`` on dummy_udc.1; (d) the
same with ``--bulk-urbs adaptive``. usbtest binds the imported and the bridged device too, as
they carry the same IDs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import _bench_profile as profile
import _bench_stack as stack
import _bench_usbtest as usbtest
from _bench_sysfs import BenchError, one_line, usbfs_node
from _bench_table import (
    BRIDGE,
    BRIDGE_BASE,
    DELAYS_MS,
    DIRECT,
    VHCI,
    Results,
    aligned,
    ratio_text,
    say,
)
from tests.kernel import _gadget
from tests.kernel._sysfs import read_text, wait_for
from tests.kernel._usbtest import PATTERN_PARAMETER, UsbtestError, UsbtestTimeout

BRIDGE_ADAPTIVE = "bridge adaptive"
PATHS = (DIRECT, VHCI, BRIDGE, BRIDGE_ADAPTIVE)
RATIOS = (("bridge/vhci", BRIDGE), ("adaptive/vhci", BRIDGE_ADAPTIVE))
READ, WRITE = "bulk read MB/s", "bulk write MB/s"
METRICS = (READ, WRITE)
TESTS = ((READ, usbtest.TEST_BULK_READ), (WRITE, usbtest.TEST_BULK_WRITE))
ADAPTIVE_ARGS = ("--bulk-urbs", "adaptive")
# (module, parameters): the SourceSink function, and usbtest checking every byte it moves.
MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("usb_f_ss_lb", ()),
    ("usbtest", ("pattern=1",)),
)
SOURCESINK_VID_PID = f"{_gadget.VID_NETCHIP:04x}:{_gadget.PID_GADGET_ZERO:04x}"
BIND_TIMEOUT_S = 30.0
FAR_ABOVE = 1.5  # direct over the next fastest cell that shows dummy_hcd does not bound it

OpenPath = Callable[[], AbstractContextManager[Path]]


def new_results() -> Results:
    if stack.baseline_src() is None:
        return Results(PATHS, RATIOS)
    return Results((*PATHS, BRIDGE_BASE), (*RATIOS, ("base/vhci", BRIDGE_BASE)))


def _interface(device: Path) -> Path:
    """Interface 0 of the active configuration, ``<dev>:<config>.0``."""
    return device / f"{device.name}:{read_text(device / 'bConfigurationValue')}.0"


def _driver(interface: Path) -> str:
    link = interface / "driver"
    return link.resolve().name if link.exists() else ""


def _usbtest_ready(device: Path) -> Path | None:
    """The device's usbfs node once usbtest holds interface 0 and the node exists."""
    if _driver(_interface(device)) != "usbtest":
        return None
    node = usbfs_node(device)
    return node if node.exists() else None


def _bulk_pair(interface: Path) -> None:
    """Fails unless the interface has a bulk IN and a bulk OUT endpoint: without them usbtest
    would answer tests 1 and 2 with success having moved nothing."""
    found = {
        read_text(endpoint / "direction")
        for endpoint in interface.glob("ep_*")
        if read_text(endpoint / "type") == "Bulk"
    }
    if not {"in", "out"} <= found:
        raise BenchError(f"{interface.name} has no bulk IN and OUT pair (bulk: {sorted(found)})")


def usbtest_node(device: Path) -> Path:
    """Waits until usbtest is bound to the device's interface 0; returns its usbfs node."""
    try:
        node = wait_for(lambda: _usbtest_ready(device), BIND_TIMEOUT_S, "usbtest")
    except TimeoutError:
        interface = _interface(device)
        bound = _driver(interface) or "no driver"
        raise BenchError(
            f"usbtest did not take {interface.name} within {BIND_TIMEOUT_S:g} s ({bound})"
        ) from None
    _bulk_pair(_interface(device))
    return node


def _check_pattern() -> None:
    value = read_text(Path(PATTERN_PARAMETER))
    if value != "1":
        raise BenchError(
            f"usbtest's pattern is {value or 'unknown'}, not 1: no byte would be checked"
        )


@dataclass(frozen=True)
class BulkBench:
    """Measures one path after another into ``results``."""

    results: Results

    def path(self, name: str, delays: Sequence[int], open_path: OpenPath) -> None:
        say(f"{name}: setting up")
        try:
            with open_path() as device:
                node = usbtest_node(device)
                say(f"{name}: usbtest holds {_interface(device).name}, {node}")
                for delay in delays:
                    with stack.netem_delay(delay // 2):
                        for metric, test in TESTS:
                            self._measure(name, delay, metric, node, test)
        except (BenchError, OSError) as exc:
            self.results.fail(name, delays, METRICS, f"{name}: {one_line(str(exc))}")

    def _measure(self, name: str, delay: int, metric: str, node: Path, test: int) -> None:
        where = f"{name}, {delay} ms, {metric.removesuffix(' MB/s')}"
        try:
            run = usbtest.bulk_rate(node, test)
        except UsbtestTimeout as exc:
            # Its process may hold the device: the path's other cells would wait on it too.
            raise BenchError(f"{where}: {exc}; the path's other cells not measured") from None
        except UsbtestError as exc:
            self.results.fail(name, (delay,), (metric,), f"{where}: {exc}")
            return
        self.results.put(name, delay, metric, run.mb_per_s)
        if run.iterations < usbtest.ITERATIONS:
            self.results.notes.append(
                f"{where}: {run.iterations} URBs instead of {usbtest.ITERATIONS}"
                f" (all {usbtest.ITERATIONS} would take about"
                f" {run.wall_s * usbtest.ITERATIONS / run.iterations:.0f} s)"
            )
        say(
            f"{where}: {self.results.text(name, delay, metric)} MB/s,"
            f" {run.iterations} x {run.length >> 10} KiB in {run.wall_s:.3f} s"
            f" (usbtest's own {run.driver_s:.3f} s)"
        )


def _network_paths(bench: BulkBench, busid: str, out: Path) -> None:
    """vhci-hcd, the bridge and the adaptive bridge, all importing one usbipd export."""
    with contextlib.ExitStack() as shared:
        try:
            server = shared.enter_context(stack.usbipd(out / "usbipd.log"))
            shared.enter_context(stack.exported(busid))
        except BenchError as exc:
            for name in PATHS[1:]:
                bench.results.fail(name, DELAYS_MS, METRICS, f"{name}: {one_line(str(exc))}")
            return
        log = out / "bridge.log"
        bench.path(VHCI, DELAYS_MS, lambda: stack.vhci_import(server, busid, SOURCESINK_VID_PID))
        bench.path(
            BRIDGE,
            DELAYS_MS,
            lambda: stack.bridged(stack.bridge_argv(server, busid), stack.BRIDGE_UDC, log),
        )
        adaptive = stack.bridge_argv(server, busid, *ADAPTIVE_ARGS)
        bench.path(
            BRIDGE_ADAPTIVE, DELAYS_MS, lambda: stack.bridged(adaptive, stack.BRIDGE_UDC, log)
        )
        base = stack.baseline_src()
        if base is not None:
            argv = stack.bridge_argv(server, busid, src=base)
            base_log = out / "bridge-base.log"
            bench.path(
                BRIDGE_BASE, DELAYS_MS, lambda: stack.bridged(argv, stack.BRIDGE_UDC, base_log)
            )
        profile.run_profiles(server, busid, out, base, usbtest_node)


def run_bulk(results: Results, out: Path) -> None:
    """Fills the generic bulk table; a step that cannot be set up marks what it holds up n/a."""
    bench = BulkBench(results)
    with contextlib.ExitStack() as source:
        try:
            say("generic bulk: loading usb_f_ss_lb and usbtest")
            stack.load(MODULES)
            _check_pattern()
            gadget = source.enter_context(_gadget.sourcesink_gadget(stack.SOURCE_UDC))
        except (BenchError, OSError, LookupError) as exc:
            for name in PATHS:
                delays = (0,) if name == DIRECT else DELAYS_MS
                results.fail(name, delays, METRICS, f"{name}: {one_line(str(exc))}")
            return
        bench.path(DIRECT, (0,), lambda: contextlib.nullcontext(gadget.device))
        _network_paths(bench, gadget.busid, out)


def _dummy_hcd_line(results: Results) -> str:
    """How far the direct path is above every other column: if dummy_hcd's timer bounded the
    figures, the columns that also cross dummy_hcd would come close to it."""
    parts, ratios = [], []
    for metric in METRICS:
        direct = results.value(DIRECT, 0, metric)
        others = [
            (value, f"{path}, {delay} ms")
            for path in PATHS[1:]
            for delay in DELAYS_MS
            if (value := results.value(path, delay, metric)) is not None and value > 0
        ]
        text = f"{metric.split()[1]} {results.text(DIRECT, 0, metric)}"
        if direct is not None:
            text += " MB/s"
        if direct is not None and others:
            best, where = max(others)
            ratios.append(direct / best)
            text += f" = {ratio_text(direct / best)} the next fastest ({where})"
        parts.append(text)
    if len(ratios) < len(METRICS):
        verdict = "not compared with the other paths"
    elif min(ratios) >= FAR_ABOVE:
        verdict = "far above the others: dummy_hcd's timer is not what bounds them"
    else:
        verdict = f"under {FAR_ABOVE:g}x the next fastest: dummy_hcd may bound the figures"
    return f"dummy_hcd alone (direct, 0 ms): {', '.join(parts)}; {verdict}"


def render_lines(results: Results) -> list[str]:
    """The generic bulk table with its heading, notes and the dummy_hcd check."""
    return [
        "generic bulk: the host's usbtest driver (pattern=1) against a configfs SourceSink gadget",
        f"(0525:a4a0, pattern 1) through USBDEVFS_IOCTL: test 2 reads, test 1 writes,"
        f" {usbtest.ITERATIONS} URBs of {usbtest.URB_LENGTH >> 10} KiB;",
        "every byte is checked (by usbtest on a read, by the gadget on a write);"
        " MB/s over the wall",
        "time around the ioctl (MB = 10^6 bytes); bridge adaptive: attach"
        f" {' '.join(ADAPTIVE_ARGS)}",
        "",
        *aligned(results.rows(DELAYS_MS, METRICS)),
        "",
        *results.notes,
        _dummy_hcd_line(results),
    ]
