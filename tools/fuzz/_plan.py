"""Target 3: the backend choice and the URB plans against hostile snapshots.

A snapshot is built from hostile raw descriptors (``DeviceSnapshot.from_raw``, as enumeration
builds it), or from its own JSON mutated (``from_json``, as ``--snapshot`` files would be).
Then what ``plan`` and ``attach`` do with it before touching a kernel: ``plan_backend`` for
each requested backend on a controller known or not, ``render_plan`` and ``plan_json``, the
blobs the chosen backend writes (FunctionFS descriptors and strings; GadgetFS's ep0 write
and each endpoint file's configuration), ``plans_for`` / ``describe_plans`` for both bulk
URB policies, and the plans' own bookkeeping fed random completions and CBWs. A snapshot
must also survive its JSON round trip unchanged. Only the ``UsbipGadgetError`` family may
escape (a snapshot with no configuration is refused with ``NoBackend``).
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable

from tools.fuzz import _descriptors as d
from tools.fuzz._harness import Invariant, Target
from tools.fuzz._mutate import edge_u32, mutate

from usbip_gadget import NoBackend, UsbipGadgetError
from usbip_gadget.bridge import BULK_URBS, Plan, describe_plans, plans_for
from usbip_gadget.gadget import (
    KNOWN_ENDPOINT_FILES,
    Backend,
    BackendPlan,
    plan_backend,
    plan_json,
    render_plan,
    string_indexes,
)
from usbip_gadget.gadget.functionfs import build_descriptors, build_strings
from usbip_gadget.gadget.gadgetfs import gadgetfs_layout, map_endpoints, same_endpoint_addresses
from usbip_gadget.usb import Configuration, DeviceSnapshot, render_tree

_FILES = KNOWN_ENDPOINT_FILES["dummy_udc"]
_OTHER_FILES = ("ep1in", "ep2out", "ep3in-int", "ep4out-iso", "ep5", "epX", "ep16in", "ep0")
_DRIVERS = (None, "dwc2", "dummy_udc", "musb-hdrc", "fe980000.usb")


def snapshot_from_raw(rng: random.Random) -> DeviceSnapshot:
    """A snapshot of hostile descriptors; ``DescriptorError`` when from_raw refuses them."""
    count = 0 if rng.random() < 0.03 else rng.choice((1, 1, 1, 1, 2, 2, 3))
    configs = tuple(d.config_raw(rng) for _ in range(count))
    reports = {
        (rng.choice((0, 1, 2, 255)), rng.randrange(4)): d.report_raw(rng, rng.choice((63, 300)))
        for _ in range(rng.choice((0, 0, 1, 2)))
    }
    return DeviceSnapshot.from_raw(
        "1-1",
        rng.choice(d.SPEEDS),
        d.device_raw(rng, configurations=count if rng.random() < 0.8 else None),
        configs,
        lang_ids=rng.choice(((), (0x0409,), (0x0409, 0x0407))),
        strings=d.strings(rng, [1, 2, 3, 4, 5, rng.randrange(256)]),
        bos_raw=d.bos_raw(rng) if rng.random() < 0.3 else None,
        device_qualifier_raw=d.qualifier_raw(rng) if rng.random() < 0.3 else None,
        hid_reports=reports,
    )


def _mutated_json(rng: random.Random, snapshot: DeviceSnapshot) -> object:
    """The snapshot's JSON with one field replaced by something else."""
    obj = snapshot.to_json()
    text = json.dumps(obj)
    if rng.random() < 0.5:
        key = rng.choice(('"raw"', '"speed"', '"lang_ids"', '"bLength"', '"strings"'))
        return json.loads(text.replace(key, key[:-1] + 'x"', 1))
    paths: list[tuple[dict[str, object], str]] = [(obj, key) for key in obj]
    for config in obj["configurations"]:
        paths += [(config, key) for key in config]
    holder, key = rng.choice(paths)
    holder[key] = rng.choice((None, 0, -1, "", "zz", [], {}, True, edge_u32(rng), "0" * 7))
    return obj


def _round_trip(rng: random.Random, snapshot: DeviceSnapshot) -> None:
    if DeviceSnapshot.from_json(json.loads(json.dumps(snapshot.to_json()))) != snapshot:
        raise Invariant("the snapshot changed in its JSON round trip")
    if rng.random() < 0.3:
        DeviceSnapshot.from_json(_mutated_json(rng, snapshot))


def _endpoint_files(rng: random.Random) -> list[str] | None:
    roll = rng.random()
    if roll < 0.4:
        return None
    if roll < 0.7:
        return list(_FILES)
    pool = [*_FILES, *_OTHER_FILES]
    return rng.sample(pool, rng.randrange(len(pool)))


def _blobs(
    snapshot: DeviceSnapshot, plan: BackendPlan, index: int, files: list[str] | None
) -> None:
    """What plugging would write, short of the kernel."""
    config = snapshot.configurations[index]
    if plan.backend is Backend.FUNCTIONFS:
        _strings, mapping = build_strings(snapshot.strings, string_indexes(config))
        build_descriptors(config, speed=snapshot.speed, strings=mapping)
        return
    slots = same_endpoint_addresses(config) if files is None else map_endpoints(config, files)
    layout = gadgetfs_layout(snapshot, slots, index)
    layout.blob()
    for ep in config.endpoints():
        layout.endpoint_config(ep)


def _plans(rng: random.Random, snapshot: DeviceSnapshot) -> None:
    index = rng.randrange(len(snapshot.configurations)) if snapshot.configurations else 0
    files, driver = _endpoint_files(rng), rng.choice(_DRIVERS)
    for requested in rng.sample(list(Backend), rng.choice((1, 1, 1, 2, 3))):
        try:
            plan = plan_backend(
                snapshot, requested, endpoint_files=files, driver=driver, config_index=index
            )
        except UsbipGadgetError:
            continue
        render_plan(plan)
        json.dumps(plan_json(plan))
        _blobs(snapshot, plan, index, files if plan.backend is Backend.GADGETFS else None)
    if not snapshot.configurations:
        raise NoBackend("no configuration: nothing to size URBs for")
    config = snapshot.configurations[index]
    policy = rng.choice(BULK_URBS)
    describe_plans(config, policy)
    _exercise(rng, config, plans_for(config, policy))


def _exercise(rng: random.Random, config: Configuration, plans: dict[int, Plan]) -> None:
    """The plans' bookkeeping fed what pumps would tell them, CBWs included."""
    if not plans:
        return
    addresses = list(plans)
    for _ in range(rng.randrange(12)):
        address = rng.choice(addresses)
        plan = plans[address]
        _step(rng, plan, address)
        if not address & 0x80 and plan.next_out(address) <= 0:
            raise Invariant(f"next_out {plan.next_out(address)} on 0x{address:02x}")


def _cbw(rng: random.Random) -> bytes:
    length = rng.choice((0, 1, 512, 513, 1 << 20, (1 << 20) + 1, edge_u32(rng)))
    cbw = struct.pack("<IIIB", 0x43425355, rng.randrange(1 << 32), length, rng.choice((0, 0x80)))
    cbw += bytes((0, 10)) + rng.randbytes(16)
    return cbw if rng.random() < 0.8 else mutate(rng, cbw, most=1)


def _step(rng: random.Random, plan: Plan, address: int) -> None:
    steps: list[Callable[[], None]] = [
        lambda: plan.saw_in(address, rng.choice((0, 64, 512, 65536)), rng.randrange(70000)),
        lambda: plan.saw_out(address, _cbw(rng) if rng.random() < 0.6 else rng.randbytes(64)),
        lambda: plan.pin(address),
        lambda: plan.requeue(address, [rng.choice((0, 64, 512))]),
        plan.reset,
    ]
    rng.choice(steps)()


def plan_case(rng: random.Random) -> None:
    snapshot = snapshot_from_raw(rng)
    _plans(rng, snapshot)
    if rng.random() < 0.25:  # the costly ones: what ``describe`` prints, and its JSON
        render_tree(snapshot)
        _round_trip(rng, snapshot)


TARGETS = [Target("plan", plan_case, (UsbipGadgetError,), 0.10)]
