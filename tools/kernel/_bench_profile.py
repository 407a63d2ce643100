"""The bench's profiles of ``attach`` under the generic bulk read load.

For the baseline revision (when the bench was given one), this revision, and this revision
with ``--bulk-urbs adaptive``: ``attach`` runs under cProfile (``_profiled_cli.py``), usbtest
reads the same load through each (test 2, ``URBS`` URBs of ``LENGTH`` bytes: small enough that
the slowest bridge under the profiler finishes each URB within usbtest's 10 s), SIGTERM stops
it, and the functions with the most own time go to OUT/profile.txt, with what was moved. The
statistics themselves stay in OUT/profile-*.pstats.
"""

from __future__ import annotations

import io
import pstats
from collections.abc import Callable
from pathlib import Path

import _bench_stack as stack
import _bench_usbtest as usbtest
from _bench_sysfs import BenchError, one_line
from _bench_table import say

TOP = 15
URBS, LENGTH = 32, 16 * 1024
ADAPTIVE_ARGS = ("--bulk-urbs", "adaptive")


def run_profiles(
    server: str, busid: str, out: Path, base: Path | None, node_of: Callable[[Path], Path]
) -> None:
    """Profiles each bridge in turn and writes OUT/profile.txt; failures are noted there."""
    cases: list[tuple[str, Path | None, tuple[str, ...]]] = [
        ("bridge", None, ()),
        ("bridge adaptive", None, ADAPTIVE_ARGS),
    ]
    if base is not None:
        cases.insert(0, ("bridge (base)", base, ()))
    lines = [
        f"attach under cProfile while usbtest reads {URBS} URBs of {LENGTH >> 10} KiB"
        f" (test 2, 0 ms); top {TOP} functions by own time (cProfile's clock is wall time:"
        " epoll.poll is waiting)",
    ]
    for label, src, extra in cases:
        lines += ["", *_profile(label, server, busid, out, src, extra, node_of)]
    (out / "profile.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    say(f"profiles written to {out / 'profile.txt'}")


def _profile(
    label: str,
    server: str,
    busid: str,
    out: Path,
    src: Path | None,
    extra: tuple[str, ...],
    node_of: Callable[[Path], Path],
) -> list[str]:
    slug = label.replace("(", "").replace(")", "").replace(" ", "-")
    stats_path = out / f"profile-{slug}.pstats"
    argv = stack.bridge_argv(server, busid, *extra, src=src, profile=stats_path)
    say(f"{label}: profiling")
    try:
        with stack.bridged(argv, stack.BRIDGE_UDC, out / "bridge-profile.log") as device:
            node = node_of(device)
            run = usbtest.run_test(
                node, usbtest.TEST_BULK_READ, URBS, LENGTH, deadline_s=usbtest.DEADLINE_S
            )
    except (BenchError, OSError, usbtest.UsbtestError) as exc:
        return [f"{label}: not profiled: {one_line(str(exc))}"]
    try:
        stats = pstats.Stats(str(stats_path), stream=(text := io.StringIO()))
    except (OSError, TypeError, EOFError) as exc:
        return [f"{label}: no statistics: {one_line(str(exc))}"]
    stats.strip_dirs().sort_stats("tottime").print_stats(TOP)
    total = stats.total_tt  # type: ignore[attr-defined]
    head = (
        f"{label}: {run.iterations} x {run.length >> 10} KiB read in {run.wall_s:.1f} s"
        f" ({run.mb_per_s:.3g} MB/s under the profiler); {total:.1f} s profiled over attach's"
        f" whole run"
    )
    table = [line for line in text.getvalue().splitlines() if line.strip()]
    start = next((i for i, line in enumerate(table) if "ncalls" in line), 0)
    return [head, *table[start:]]
