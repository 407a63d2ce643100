"""Running a target's cases: seeds, budgets, and the tally of what escaped.

A target is one function taking a seeded ``random.Random``; case ``i`` of a run with seed
``s`` always gets the same generator, so any failure is replayed from ``(s, target, i)``
alone. What a case raises is sorted into: an allowed error (the target's error family: the
input was refused as it should be), a known failure (``Known``, counted apart), a hang
(``Hang``, or the case overran its wall-clock budget), or an unexpected exception
(anything else, ``Invariant`` included).
"""

from __future__ import annotations

import random
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType


class Hang(Exception):
    """A case did not finish: a trio deadline on the mock clock passed, or the wall clock."""


class Known(Exception):
    """A failure already known and fixed elsewhere; ``label`` names it in the report."""

    def __init__(self, label: str, cause: BaseException) -> None:
        super().__init__(f"{label}: {type(cause).__name__}: {cause}")
        self.label = label


class Invariant(Exception):
    """A property the case checks did not hold (counted as unexpected)."""


@dataclass(frozen=True)
class Target:
    """One fuzz target: ``case(rng)`` runs one case and raises what escaped."""

    name: str
    case: Callable[[random.Random], None]
    allowed: tuple[type[BaseException], ...]
    weight: float  # share of the run's cases
    budget: float = 5.0  # wall-clock seconds a case may take before it counts as a hang


@dataclass(frozen=True)
class Failure:
    case: int
    kind: str  # "unexpected" or "hang"
    text: str  # exception type and message, one line
    where: str  # the innermost frame, file:line in function


@dataclass
class Tally:
    """What a run of one target's cases gave."""

    name: str
    cases: int = 0
    allowed: int = 0  # cases whose input was refused with an allowed error
    unexpected: int = 0
    hangs: int = 0
    known: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0  # CPU seconds (the machine may be shared)
    slowest: float = 0.0
    failures: list[Failure] = field(default_factory=list)

    def merge(self, other: Tally) -> None:
        self.cases += other.cases
        self.allowed += other.allowed
        self.unexpected += other.unexpected
        self.hangs += other.hangs
        self.known.update(other.known)
        self.seconds += other.seconds
        self.slowest = max(self.slowest, other.slowest)
        self.failures = sorted([*self.failures, *other.failures], key=lambda f: f.case)[:KEEP]


KEEP = 8  # failures kept per target for the report


def case_rng(seed: int, name: str, index: int) -> random.Random:
    """The generator of case ``index`` of ``name`` in a run seeded ``seed``."""
    return random.Random(f"{seed}/{name}/{index}")


class _Alarm(BaseException):
    """Raised by SIGALRM inside an overrunning case (a BaseException, so that no
    ``except Exception`` of the code under test swallows it)."""


@contextmanager
def watchdog(enabled: bool) -> Iterator[Callable[[float], None]]:
    """``arm(seconds)`` before each case (0 disarms): a case still running then is
    interrupted. Without ``enabled`` nothing is installed (pytest-timeout owns SIGALRM)."""
    if not enabled:
        yield lambda _seconds: None
        return

    def ring(_signum: int, _frame: FrameType | None) -> None:
        raise _Alarm

    # Whoever had the alarm before (pytest-timeout) gets it back with its time left.
    previous = signal.signal(signal.SIGALRM, ring)
    left, _interval = signal.getitimer(signal.ITIMER_REAL)
    began = time.monotonic()

    def arm(seconds: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, seconds)

    try:
        yield arm
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if left:
            signal.setitimer(signal.ITIMER_REAL, max(left - (time.monotonic() - began), 0.001))


def _kind(target: Target, exc: BaseException, tally: Tally) -> str | None:
    """Count ``exc``; the kind of failure it is, or None when it is not one."""
    if isinstance(exc, _Alarm | Hang):
        tally.hangs += 1
        return "hang"
    if isinstance(exc, Known):
        tally.known[exc.label] += 1
        return None
    if isinstance(exc, target.allowed) and not isinstance(exc, Invariant):
        tally.allowed += 1
        return None
    tally.unexpected += 1
    return "unexpected"


def _failure(index: int, kind: str, exc: BaseException, budget: float) -> Failure:
    frames = list(traceback.extract_tb(exc.__traceback__))
    if isinstance(exc, _Alarm):  # where the case was when the alarm rang, not the handler
        frames, text = frames[:-1], f"still running after {budget:g} s (wall clock)"
    else:
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    where = f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else "?"
    return Failure(index, kind, text, where)


def run_cases(
    target: Target, seed: int, start: int, stop: int, *, use_watchdog: bool = True
) -> Tally:
    """Cases ``start`` to ``stop - 1`` of ``target``."""
    tally = Tally(target.name)
    began = time.process_time()
    with watchdog(use_watchdog) as arm:
        for index in range(start, stop):
            at = time.perf_counter()
            kind = _run_one(target, case_rng(seed, target.name, index), arm, tally)
            if kind is not None and len(tally.failures) < KEEP:
                tally.failures.append(_failure(index, kind[0], kind[1], target.budget))
            took = time.perf_counter() - at
            tally.slowest = max(tally.slowest, took)
            if kind is None and took > target.budget:  # overran without being interrupted
                tally.hangs += 1
                if len(tally.failures) < KEEP:
                    tally.failures.append(Failure(index, "hang", f"took {took:.1f} s", "-"))
            tally.cases += 1
    tally.seconds = time.process_time() - began
    return tally


def _run_one(
    target: Target, rng: random.Random, arm: Callable[[float], None], tally: Tally
) -> tuple[str, BaseException] | None:
    """One case, counted; the kind of failure and its exception, if it is one."""
    try:
        arm(target.budget)
        try:
            target.case(rng)
        finally:
            arm(0)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # whatever escaped is sorted: that is the point
        kind = _kind(target, exc, tally)
        return None if kind is None else (kind, exc)
    return None


def replay(target: Target, seed: int, index: int) -> str:
    """Run one case, its traceback shown; what it gave ("passed", "refused", "known", or the
    kind of failure)."""
    tally = Tally(target.name)
    try:
        target.case(case_rng(seed, target.name, index))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # shown, and sorted as in a run
        traceback.print_exc()
        kind = _kind(target, exc, tally)
        return kind or ("known" if tally.known else "refused")
    return "passed"


__all__ = [
    "Failure",
    "Hang",
    "Invariant",
    "Known",
    "Tally",
    "Target",
    "case_rng",
    "replay",
    "run_cases",
    "watchdog",
]
