"""Fuzzing at scale, in process, without root or a VM (``make fuzz``; see ``__main__``).

The targets, each with the only errors it may raise:

- ``codec-host``, ``codec-device``: ``protocol.Connection`` in each role fed real traffic,
  mutated traffic and random bytes in random fragments; ``codec-op-parser`` and
  ``codec-urb-parser``: the two phases' parsers called directly (``_codec``). Our protocol
  errors only.
- ``enumerate``: ``client.enumerate_device`` against a hostile device answering with
  random, truncated, mutated, empty and oversized descriptors, stalls, errors and silence;
  in-memory, and a slice over the real client and a ``FakeRemote`` (``_enumerate``).
- ``plan``: snapshots built from mutated raw descriptors (``DeviceSnapshot.from_raw``) and
  mutated JSON (``from_json``), through ``gadget.plan_backend`` and the URB plans of
  ``bridge.plans_for`` / ``describe_plans`` and the blobs each backend would write (``_plan``).
- ``gadgetfs-ep0``: the GadgetFS ep0 machine fed random event bytes and call outcomes
  (``_ep0``); ``bridge-ep0``: the real bridge between ``FakeGadget`` and ``FakeRemote``,
  the host sending random SETUPs and data stages, the device answering at random
  (``_bridge``). The ``UsbipGadgetError`` family only, every request answered, never more
  data than asked for.
- ``usbredir-host``, ``usbredir-guest``: the usbredir codec in each role fed a peer's real
  traffic as it is, mutated, spliced or cut into random bytes (``_usbredir``). Our protocol
  errors only.
"""

from __future__ import annotations

from tools.fuzz import _bridge, _codec, _enumerate, _ep0, _plan, _usbredir
from tools.fuzz._harness import Tally, Target, run_cases

DEFAULT_SEED = 20240601
DEFAULT_CASES = 1_000_000

TARGETS: list[Target] = [
    *_codec.TARGETS,
    *_enumerate.TARGETS,
    *_plan.TARGETS,
    *_ep0.TARGETS,
    *_bridge.TARGETS,
    *_usbredir.TARGETS,
]


def share(target: Target, cases: int, among: list[Target]) -> int:
    """How many of ``cases`` go to ``target`` (by weight among the targets run; at least 1)."""
    return max(1, round(cases * target.weight / sum(t.weight for t in among)))


def run_slice(name: str, cases: int, seed: int = DEFAULT_SEED) -> Tally:
    """The first ``cases`` cases of one target, with no wall-clock alarm (for pytest)."""
    target = next(t for t in TARGETS if t.name == name)
    return run_cases(target, seed, 0, cases, use_watchdog=False)


__all__ = ["DEFAULT_CASES", "DEFAULT_SEED", "TARGETS", "run_slice", "share"]
