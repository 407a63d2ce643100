"""The bridge: a remote device's traffic piped through a local gadget; ``attach``, ``listen``.

It owns the nursery: one ep0 loop answering the host's requests through the remote device,
one pump per endpoint moving URBs, and the plans that size those URBs; and what may pass:
the device policy (which devices are plugged) and the control policy (which of the host's
requests reach the device). May import the
standard library, trio, ``usbip_gadget._errors``, ``_groups``, ``_net``, ``protocol``, ``usb``,
``client`` and the ``usbip_gadget.gadget`` package (never its private modules or backends).
"""

from usbip_gadget.bridge._attach import RETRYABLE, AttachOptions, attach
from usbip_gadget.bridge._bridge import CONTROL_TIMEOUT, DEFAULT_DEPTH, Bridge
from usbip_gadget.bridge._control_policy import ControlPolicy
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
from usbip_gadget.bridge._policy import (
    NO_RULES,
    ClassRule,
    DeviceGate,
    DevicePolicy,
    Verdict,
    parse_class_rule,
)
from usbip_gadget.bridge._pumps import InPump, OutPump, clear_remote_halt

__all__ = [
    "BULK_URBS",
    "CONTROL_TIMEOUT",
    "DEFAULT_DEPTH",
    "DEFAULT_LISTEN",
    "NO_RULES",
    "RETRYABLE",
    "AdaptivePlan",
    "AttachOptions",
    "Bridge",
    "BulkOnlyPlan",
    "ClassRule",
    "ControlPolicy",
    "DeviceGate",
    "DevicePolicy",
    "InPump",
    "ListenOptions",
    "OutPump",
    "Plan",
    "StreamPlan",
    "Verdict",
    "attach",
    "clear_remote_halt",
    "describe_plans",
    "listen",
    "parse_class_rule",
    "plans_for",
    "whole_packets",
]
