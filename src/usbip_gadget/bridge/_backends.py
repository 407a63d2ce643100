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

from usbip_gadget._errors import GadgetFsUnsupported, NoBackend
from usbip_gadget.gadget import GadgetBackend, check_expressible, open_functionfs_gadget
from usbip_gadget.gadget._ffs_blob import interface_numbers
from usbip_gadget.gadget._gadgetfs import open_gadgetfs_gadget
from usbip_gadget.gadget._gadgetfs_layout import (
    EP0_PACKET,
    NO_ISOCHRONOUS,
    USB_2_0,
    Difference,
    descriptors,
    differences,
    gadgetfs_layout,
    gadgetfs_reasons,
    map_endpoints,
    same_endpoint_addresses,
)
from usbip_gadget.gadget._udc import udc_driver
from usbip_gadget.usb import DescriptorType, DeviceSnapshot

BACKENDS = ("auto", "functionfs", "gadgetfs")

# The endpoint files a controller driver offers GadgetFS, for planning before plugging.
_DUMMY_UDC_FILES = (
    "ep1in-bulk", "ep2out-bulk", "ep5in-int", "ep6in-bulk", "ep7out-bulk", "ep10in-int",
    "ep11in-bulk", "ep12out-bulk", "ep15in-int", "ep1out-bulk", "ep2in-bulk",
    "ep-aout", "ep-bin", "ep-cout", "ep-dout", "ep-ein", "ep-fout", "ep-gin", "ep-hout",
    "ep-iout", "ep-jin", "ep-kout", "ep-lin", "ep-mout",
)  # fmt: skip
KNOWN_ENDPOINT_FILES = {"dummy_udc": _DUMMY_UDC_FILES}


@dataclass(frozen=True, slots=True)
class BackendPlan:
    """What ``attach`` would do with a device on a controller."""

    backend: str
    functionfs_refuses: tuple[str, ...]
    gadgetfs_refuses: tuple[str, ...]
    differences: tuple[Difference, ...]
    notes: tuple[str, ...]


def plan_backend(
    snapshot: DeviceSnapshot,
    requested: str = "auto",
    *,
    endpoint_files: Sequence[str] | None = None,
    driver: str | None = None,
    config_index: int = 0,
) -> BackendPlan:
    """The backend for ``snapshot`` and what the host will see differently; ``NoBackend``.

    ``endpoint_files`` are the controller's GadgetFS endpoint names and ``driver`` its kernel
    driver, when known.
    """
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}")
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
    if requested == "functionfs" or (requested == "auto" and not ffs_refuses):
        if ffs_refuses:
            raise NoBackend("FunctionFS cannot express this device: " + "; ".join(ffs_refuses))
        found, ffs_notes = _functionfs_differences(snapshot, config_index)
        return BackendPlan("functionfs", ffs_refuses, gfs_refuses, found, tuple(ffs_notes))
    if gfs_refuses:
        why = "; ".join(gfs_refuses)
        if requested == "gadgetfs":
            raise NoBackend(f"GadgetFS cannot replay this device: {why}")
        raise NoBackend(
            "neither FunctionFS nor GadgetFS can replay this device: "
            + "; ".join((*ffs_refuses, *gfs_refuses))
        )
    layout = gadgetfs_layout(snapshot, slots, config_index)
    return BackendPlan("gadgetfs", ffs_refuses, (), layout.differences, tuple(notes))


def _functionfs_differences(
    snapshot: DeviceSnapshot, config_index: int
) -> tuple[tuple[Difference, ...], list[str]]:
    """What the composite layer changes that can be known before binding."""
    config = snapshot.configurations[config_index]
    remote = snapshot.device_raw + snapshot.configurations_raw[config_index]
    shown = bytearray(remote)
    notes: dict[int, tuple[str, str]] = {}

    def put(offset: int, value: int, field: str, why: str) -> None:
        if offset < len(shown):
            shown[offset] = value
            notes[offset] = (field, why)

    put(2, USB_2_0 & 0xFF, "bcdUSB", "the composite layer reports USB 2.0 (2.01 with LPM)")
    put(3, USB_2_0 >> 8, "bcdUSB", "the composite layer reports USB 2.0 (2.01 with LPM)")
    put(7, EP0_PACKET, "bMaxPacketSize0", "the controller's ep0 packet size")
    put(17, 1, "bNumConfigurations", "one configuration is replayed")
    numbers = interface_numbers(config)
    base = len(snapshot.device_raw)
    raw = snapshot.configurations_raw[config_index]
    for at, desc in descriptors(raw):
        if desc[1] == DescriptorType.INTERFACE and len(desc) > 2:
            local = numbers.get(desc[2], desc[2])
            put(base + at + 2, local, "bInterfaceNumber", "the composite layer numbers from 0")
    found = differences(remote, bytes(shown), notes)
    return found, [
        "FunctionFS: string indexes and endpoint addresses are assigned by the kernel when "
        "the gadget binds (composite string ids, usb_ep_autoconfig); they match the remote's "
        "only where the kernel's choice coincides"
    ]


@contextlib.asynccontextmanager
async def open_gadget(
    snapshot: DeviceSnapshot, backend: str, *, udc: str, name: str
) -> AsyncIterator[GadgetBackend]:
    """Plug ``snapshot`` with ``backend`` (``auto`` resolved); unplug on exit."""
    chosen = plan_backend(snapshot, backend).backend if backend == "auto" else backend
    if chosen == "gadgetfs":
        async with open_gadgetfs_gadget(snapshot, udc=udc) as gfs:
            yield gfs
    else:
        async with open_functionfs_gadget(snapshot, udc=udc, name=name) as ffs:
            yield ffs


def render_plan(plan: BackendPlan) -> list[str]:
    """The plan as lines of text for the user."""
    lines = [f"backend: {plan.backend}"]
    if plan.backend == "gadgetfs" and plan.functionfs_refuses:
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
        "backend": plan.backend,
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


__all__ = [
    "BACKENDS",
    "KNOWN_ENDPOINT_FILES",
    "BackendPlan",
    "NoBackend",
    "open_gadget",
    "plan_backend",
    "plan_json",
    "render_plan",
    "udc_driver",
]
