"""Test doubles for the layers above, shipped so that users' own tests can run without a kernel.

All of them are built on one model of packets on an endpoint (``_packets``): packetization
with a maximum packet size, zero-length and short packets ending a transfer, babble, and
stalls that halt an endpoint until the host clears it; and ``Reply`` for a device model's
answer to a control request.

- The device side of the bridge: ``FakeGadget`` is an in-memory ``GadgetBackend`` behaving
  like the kernel's composite layer under FunctionFS; ``FakeHost`` drives it as a USB host
  would, raising ``HostError`` and its kinds for what a URB status would report.
- Behind a USB/IP client: ``FakeRemote`` serves a packet-level device over a USB/IP
  connection, completing URBs as a host controller under usbip-host does.
- Behind the USB/IP server: ``FakeSource`` holds ``FakeDevice``s that behave like devices
  behind libusb.

May import the standard library, trio, ``usbip_gadget._errors``, ``_groups``, ``_net`` and the
public faces of ``protocol``, ``usb``, ``gadget``, ``server`` and ``client``; never their
private modules, nor the bridge or the command line.
"""

from usbip_gadget.testing._connection import Logged
from usbip_gadget.testing._endpoint import FakeEndpoint
from usbip_gadget.testing._gadget import FakeGadget
from usbip_gadget.testing._host import (
    DEFAULT_HOST_TIMEOUT,
    FakeHost,
    HostBabble,
    HostError,
    HostStall,
    HostTimeout,
)
from usbip_gadget.testing._packets import (
    STALL_MARK,
    ControlHandler,
    EndpointQueue,
    InTransfer,
    Reply,
    Stall,
    host_reads,
    packets_of,
)
from usbip_gadget.testing._remote import FakeRemote, RemoteEndpoint
from usbip_gadget.testing._source import FakeDevice, FakeSource
from usbip_gadget.testing._view import HostView

__all__ = [
    "DEFAULT_HOST_TIMEOUT",
    "STALL_MARK",
    "ControlHandler",
    "EndpointQueue",
    "FakeDevice",
    "FakeEndpoint",
    "FakeGadget",
    "FakeHost",
    "FakeRemote",
    "FakeSource",
    "HostBabble",
    "HostError",
    "HostStall",
    "HostTimeout",
    "HostView",
    "InTransfer",
    "Logged",
    "RemoteEndpoint",
    "Reply",
    "Stall",
    "host_reads",
    "packets_of",
]
