"""A slice of every ``make fuzz`` target on the fixed seed, and the harness's own sorting.

``make fuzz`` runs a million cases; here each target runs its first few hundred or thousand
(a few seconds in all), so that what the fast tier runs always includes them.
"""

from __future__ import annotations

import random
import time

import pytest
from tools.fuzz import DEFAULT_CASES, TARGETS, run_slice, share
from tools.fuzz._harness import Hang, Invariant, Known, Tally, Target, case_rng, run_cases

from usbip_gadget import RemoteProtocolError, UsbipGadgetError

SLICE = {
    "codec-host": 1500,
    "codec-device": 1500,
    "codec-op-parser": 3000,
    "codec-urb-parser": 3000,
    "enumerate": 150,
    "plan": 500,
    "gadgetfs-ep0": 400,
    "bridge-ep0": 25,
    "usbredir-host": 1500,
    "usbredir-guest": 1500,
}


def _show(tally: Tally) -> str:
    return "; ".join(f"case {f.case}: {f.kind}: {f.text} at {f.where}" for f in tally.failures)


def test_every_target_has_a_slice() -> None:
    assert set(SLICE) == {t.name for t in TARGETS}


@pytest.mark.parametrize("name", sorted(SLICE))
def test_slice_has_no_unexpected_exception_and_no_hang(name: str) -> None:
    tally = run_slice(name, SLICE[name])
    assert tally.cases == SLICE[name]
    assert (tally.unexpected, tally.hangs) == (0, 0), _show(tally)
    assert dict(tally.known) == {}, _show(tally)


def test_a_default_run_is_a_million_cases() -> None:
    assert sum(share(t, DEFAULT_CASES, TARGETS) for t in TARGETS) >= 1_000_000


def test_a_case_is_its_seed_target_and_index() -> None:
    first = case_rng(7, "plan", 3).random()
    assert case_rng(7, "plan", 3).random() == first
    assert first not in (case_rng(8, "plan", 3).random(), case_rng(7, "plan", 4).random())


def _case(rng: random.Random) -> None:
    match rng.randrange(6):
        case 0:
            raise RemoteProtocolError("refused")
        case 1:
            raise ValueError("escaped")
        case 2:
            raise Known("a known one", IndexError("x"))
        case 3:
            raise Hang("no result")
        case 4:
            raise Invariant("broken")


def test_the_harness_sorts_what_escapes() -> None:
    target = Target("sorting", _case, (UsbipGadgetError,), 1.0)
    tally = run_cases(target, 1, 0, 600, use_watchdog=False)
    outcomes = [case_rng(1, "sorting", i).randrange(6) for i in range(600)]
    assert tally.cases == 600
    assert tally.allowed == outcomes.count(0)
    assert tally.unexpected == outcomes.count(1) + outcomes.count(4)
    assert tally.known == {"a known one": outcomes.count(2)}
    assert tally.hangs == outcomes.count(3)
    assert {f.kind for f in tally.failures} == {"unexpected", "hang"}


def _spin(_rng: random.Random) -> None:
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass


@pytest.mark.parametrize("alarm", [False, True])
def test_a_case_over_its_wall_clock_budget_is_a_hang(alarm: bool) -> None:
    tally = run_cases(Target("spin", _spin, (), 1.0, budget=0.01), 1, 0, 2, use_watchdog=alarm)
    assert tally.hangs == 2
    assert tally.unexpected == 0
