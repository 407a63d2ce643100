"""Test doubles for the layers above: an in-memory gadget backend and the host that drives it.

``FakeGadget`` behaves like the kernel's composite layer under FunctionFS (ep0 events, data
stages, packets, halts, number remapping); ``FakeHost`` enumerates and moves data through it
the way a USB host would. Shipped in the package so that other layers' tests and users'
own tests can use them without a kernel.
"""

from usbip_gadget.testing._gadget import FakeEndpoint, FakeGadget
from usbip_gadget.testing._host import FakeHost, HostBabble, HostError, HostStall, HostTimeout

__all__ = [
    "FakeEndpoint",
    "FakeGadget",
    "FakeHost",
    "HostBabble",
    "HostError",
    "HostStall",
    "HostTimeout",
]
