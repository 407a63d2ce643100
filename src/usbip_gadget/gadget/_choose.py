"""Which kernel interface replays a device, and what the host will see differently.

``auto`` takes FunctionFS when it can express the configuration (it is a configfs function,
so it coexists with other gadgets) and GadgetFS otherwise (it serves the descriptors as
written, but takes a whole controller, the first free one). ``plan_backend`` says which one
``attach`` would use and lists every byte of the device and configuration descriptors the
host will read differently from the remote device, each with its reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from usbip_gadget._errors import GadgetFsUnsupported, NoBackend
from usbip_gadget.gadget._backend import GadgetBackend
from usbip_gadget.gadget._differences import Difference
from usbip_gadget.gadget.functionfs import (
    check_expressible,
    functionfs_differences,
    open_functionfs_gadget,
)
from usbip_gadget.gadget.gadgetfs import (
    NO_ISOCHRONOUS,
    gadgetfs_layout,
    gadgetfs_reasons,
    map_endpoints,
    open_gadgetfs_gadget,
    same_endpoint_addresses,
)
from usbip_gadget.usb import DeviceSnapshot


class Backend(StrEnum):
    """The kernel interface that replays a device (``--backend``)."""

    AUTO = "auto"  # FunctionFS where it can express the device, else GadgetFS
    FUNCTIONFS = "functionfs"
    GADGETFS = "gadgetfs"


@dataclass(frozen=True, slots=True)
class BackendPlan:
    """What ``attach`` would do with a device on a controller."""

    backend: Backend
    functionfs_refuses: tuple[str, ...]
    gadgetfs_refuses: tuple[str, ...]
    differences: tuple[Difference, ...]
    notes: tuple[str, ...]


def plan_backend(
    snapshot: DeviceSnapshot,
    requested: Backend = Backend.AUTO,
    *,
    endpoint_files: Sequence[str] | None = None,
    driver: str | None = None,
    config_index: int = 0,
) -> BackendPlan:
    """The backend for ``snapshot`` and what the host will see differently; ``NoBackend``.

    ``endpoint_files`` are the controller's GadgetFS endpoint names and ``driver`` its kernel
    driver, when known.
    """
    requested = Backend(requested)
    if not 0 <= config_index < len(snapshot.configurations):
        count = len(snapshot.configurations)
        raise NoBackend(f"the device has no configuration {config_index + 1} (it has {count})")
    config = snapshot.configurations[config_index]
    ffs_refuses = check_expressible(config)
    gfs_refuses = gadgetfs_reasons(snapshot, config_index)
    notes: list[str] = []
    slots = same_endpoint_addresses(config)
    if not gfs_refuses and endpoint_files is not None:
        try:
            slots = map_endpoints(config, endpoint_files, isochronous=driver not in NO_ISOCHRONOUS)
        except GadgetFsUnsupported as exc:
            gfs_refuses = exc.reasons
    elif endpoint_files is None:
        notes.append(
            "GadgetFS: endpoint addresses are kept if the controller has matching endpoints "
            "(checked when plugging; this controller's endpoints are not known in advance)"
        )
    if requested is Backend.FUNCTIONFS or (requested is Backend.AUTO and not ffs_refuses):
        if ffs_refuses:
            raise NoBackend("FunctionFS cannot express this device: " + "; ".join(ffs_refuses))
        found, ffs_notes = functionfs_differences(snapshot, config_index)
        return BackendPlan(Backend.FUNCTIONFS, ffs_refuses, gfs_refuses, found, tuple(ffs_notes))
    if gfs_refuses:
        why = "; ".join(gfs_refuses)
        if requested is Backend.GADGETFS:
            raise NoBackend(f"GadgetFS cannot replay this device: {why}")
        raise NoBackend(
            "neither FunctionFS nor GadgetFS can replay this device: "
            + "; ".join((*ffs_refuses, *gfs_refuses))
        )
    layout = gadgetfs_layout(snapshot, slots, config_index)
    return BackendPlan(Backend.GADGETFS, ffs_refuses, (), layout.differences, tuple(notes))


@contextlib.asynccontextmanager
async def open_gadget(
    snapshot: DeviceSnapshot, backend: Backend, *, udc: str, name: str
) -> AsyncIterator[GadgetBackend]:
    """Plug ``snapshot`` with ``backend`` (``auto`` resolved); unplug on exit."""
    backend = Backend(backend)
    chosen = plan_backend(snapshot, backend).backend if backend is Backend.AUTO else backend
    if chosen is Backend.GADGETFS:
        async with open_gadgetfs_gadget(snapshot, udc=udc) as gfs:
            yield gfs
    else:
        async with open_functionfs_gadget(snapshot, udc=udc, name=name) as ffs:
            yield ffs


def render_plan(plan: BackendPlan) -> list[str]:
    """The plan as lines of text for the user."""
    lines = [f"backend: {plan.backend.value}"]
    if plan.backend is Backend.GADGETFS and plan.functionfs_refuses:
        lines.append("FunctionFS cannot express it:")
        lines += [f"  {reason}" for reason in plan.functionfs_refuses]
    if plan.differences:
        lines.append("the host will read differently (offset into device + configuration):")
        for diff in plan.differences:
            remote = "—" if diff.remote is None else f"0x{diff.remote:02x}"
            local = "—" if diff.local is None else f"0x{diff.local:02x}"
            lines.append(f"  {diff.offset:4d} {diff.field}: {remote} → {local} ({diff.why})")
    else:
        lines.append("the host will read the device and configuration descriptors unchanged")
    lines += [f"note: {note}" for note in plan.notes]
    return lines


def plan_json(plan: BackendPlan) -> dict[str, object]:
    """The plan as a JSON-ready object."""
    return {
        "backend": plan.backend.value,
        "functionfs_refuses": list(plan.functionfs_refuses),
        "gadgetfs_refuses": list(plan.gadgetfs_refuses),
        "differences": [
            {
                "offset": d.offset,
                "field": d.field,
                "remote": d.remote,
                "local": d.local,
                "why": d.why,
            }
            for d in plan.differences
        ],
        "notes": list(plan.notes),
        "refused": None,
    }
