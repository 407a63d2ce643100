"""The bridge: a remote device's traffic piped through a local gadget, and ``attach``."""

from usbip_gadget._errors import NoBackend
from usbip_gadget.bridge._attach import RETRYABLE, AttachOptions, attach
from usbip_gadget.bridge._backends import (
    BACKENDS,
    KNOWN_ENDPOINT_FILES,
    BackendPlan,
    open_gadget,
    plan_backend,
    plan_json,
    render_plan,
    udc_driver,
)
from usbip_gadget.bridge._bridge import CONTROL_TIMEOUT, DEFAULT_DEPTH, Bridge
from usbip_gadget.bridge._listen import DEFAULT_LISTEN, ListenOptions, listen
from usbip_gadget.bridge._plans import (
    BULK_URBS,
    AdaptivePlan,
    BulkOnlyPlan,
    Plan,
    StreamPlan,
    describe_plans,
    plans_for,
    whole_packets,
)
from usbip_gadget.bridge._pumps import InPump, OutPump, clear_remote_halt

__all__ = [
    "BACKENDS",
    "BULK_URBS",
    "CONTROL_TIMEOUT",
    "DEFAULT_DEPTH",
    "DEFAULT_LISTEN",
    "KNOWN_ENDPOINT_FILES",
    "RETRYABLE",
    "AdaptivePlan",
    "AttachOptions",
    "BackendPlan",
    "Bridge",
    "BulkOnlyPlan",
    "InPump",
    "ListenOptions",
    "NoBackend",
    "OutPump",
    "Plan",
    "StreamPlan",
    "attach",
    "clear_remote_halt",
    "describe_plans",
    "listen",
    "open_gadget",
    "plan_backend",
    "plan_json",
    "plans_for",
    "render_plan",
    "udc_driver",
    "whole_packets",
]
