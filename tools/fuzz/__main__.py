"""``make fuzz``: every fuzz target, seeded, across the machine's CPUs; one line per target.

    python -m tools.fuzz [--seed N] [--cases N] [--jobs N] [--target NAME ...]
    python -m tools.fuzz --seed N --target NAME --case I     # replay one case, traceback shown

Exit status 1 when any target had an unexpected exception or a hang.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from tools.fuzz import DEFAULT_CASES, DEFAULT_SEED, TARGETS, share
from tools.fuzz._harness import Tally, Target, replay, run_cases

_CHUNK_MIN = 500


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--cases", type=int, default=DEFAULT_CASES, help="all targets together")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--target", action="append", choices=[t.name for t in TARGETS])
    parser.add_argument("--case", type=int, help="replay this one case of --target")
    return parser.parse_args(argv)


def _chunks(targets: list[Target], cases: int, jobs: int) -> list[tuple[Target, int, int]]:
    """Each target's cases in pieces small enough to keep every CPU busy to the end."""
    pieces = []
    for target in targets:
        count = share(target, cases, targets)
        size = max(_CHUNK_MIN, math.ceil(count / (4 * jobs)))
        pieces += [(target, at, min(count, at + size)) for at in range(0, count, size)]
    return pieces


def _run(piece: tuple[Target, int, int], seed: int) -> Tally:
    target, start, stop = piece
    return run_cases(target, seed, start, stop)


def _line(t: Tally) -> str:
    known = sum(t.known.values())
    return (
        f"{t.name:<18} cases {t.cases:>9,}  unexpected {t.unexpected:>3}  hangs {t.hangs:>3}"
        f"  known {known:>5}  refused {t.allowed:>9,}  slowest {t.slowest:6.3f} s"
        f"  cpu {t.seconds:6.1f} s"
    )


def _report(tallies: list[Tally], seed: int) -> None:
    for t in tallies:
        for label, count in sorted(t.known.items()):
            print(f"  {t.name}: known failure, counted apart: {label} ({count} cases)")
        for f in t.failures:
            replay = f"python -m tools.fuzz --seed {seed} --target {t.name} --case {f.case}"
            print(f"  {t.name} case {f.case}: {f.kind}: {f.text}\n      at {f.where}")
            print(f"      replay: {replay}")


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    targets = [t for t in TARGETS if not args.target or t.name in args.target]
    if args.case is not None:
        if len(targets) != 1:
            print("--case needs exactly one --target", file=sys.stderr)
            return 2
        kind = replay(targets[0], args.seed, args.case)
        print(f"{targets[0].name} case {args.case}: {kind}")
        return 1 if kind in ("unexpected", "hang") else 0
    print(f"fuzz: seed {args.seed}, {args.cases:,} cases, {args.jobs} jobs", flush=True)
    began = time.perf_counter()
    tallies = {t.name: Tally(t.name) for t in targets}
    wanted = {t.name: share(t, args.cases, targets) for t in targets}
    pieces = _chunks(targets, args.cases, args.jobs)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        # Pieces come back in order, target by target: each line is printed once it is whole.
        for tally in pool.map(_run, pieces, [args.seed] * len(pieces)):
            tallies[tally.name].merge(tally)
            if tallies[tally.name].cases == wanted[tally.name]:
                print(_line(tallies[tally.name]), flush=True)
    total = Tally("total")
    for tally in tallies.values():
        total.merge(tally)
    print(_line(total))
    print(f"wall time {time.perf_counter() - began:.1f} s")
    _report(list(tallies.values()), args.seed)
    return 1 if total.unexpected or total.hangs else 0


if __name__ == "__main__":
    sys.exit(main())
