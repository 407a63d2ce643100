"""The bridge: a remote device's traffic piped through a local gadget, and ``attach``."""

from usbip_gadget.bridge._attach import RETRYABLE, AttachOptions, attach
from usbip_gadget.bridge._bridge import CONTROL_TIMEOUT, DEFAULT_DEPTH, Bridge
from usbip_gadget.bridge._plans import BulkOnlyPlan, Plan, StreamPlan, plans_for, whole_packets
from usbip_gadget.bridge._pumps import InPump, OutPump, clear_remote_halt

__all__ = [
    "CONTROL_TIMEOUT",
    "DEFAULT_DEPTH",
    "RETRYABLE",
    "AttachOptions",
    "Bridge",
    "BulkOnlyPlan",
    "InPump",
    "OutPump",
    "Plan",
    "StreamPlan",
    "attach",
    "clear_remote_halt",
    "plans_for",
    "whole_packets",
]
