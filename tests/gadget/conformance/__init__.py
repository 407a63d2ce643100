"""What the bridge relies on from any ``GadgetBackend``, checked once for every backend.

A ``Bed`` is a plugged backend replaying ``SNAPSHOT`` and a ``HostDriver`` that moves data
through it as a USB host does. ``run_check`` opens a fresh bed for each check, runs an ep0
loop like the bridge's (``Ep0``: every event recorded, every SETUP answered by the check's
``answer``), has the host enumerate and configure the gadget, and runs the check, gadget side
and host side concurrently where a transfer needs both. ``CHECKS``:

- plugged and configured: ENABLE (after BIND, when the backend reports it);
- a vendor SETUP and its data stage: ``reply``, ``receive``, ``stall``;
- IN ``write``: exact packets, a zero-length packet ending the host's transfer;
- OUT ``read``: ending at a short packet, a zero-length one, or its length;
- ``queue_write``: order kept; ``packet_reader``: runs that rebuild the host's transfers;
- ``halt``: the host's transfers stall until its CLEAR_FEATURE(ENDPOINT_HALT);
- unplugged: DISABLE and ``EndpointShutdown`` for I/O in flight; plugged again: ENABLE.

The fast tier runs them against ``FakeGadget`` driven by ``FakeHost``
(``tests/gadget/test_conformance_fake.py``); the kernel tier against the FunctionFS and
GadgetFS backends on dummy_hcd, the host being Linux's own through usbfs
(``tests/kernel/test_conformance.py``).
"""

from tests.gadget.conformance._bed import SNAPSHOT, Bed, Check, Ep0, HostDriver, OpenBed, run_check
from tests.gadget.conformance._checks import CHECKS, check_id

__all__ = [
    "CHECKS",
    "SNAPSHOT",
    "Bed",
    "Check",
    "Ep0",
    "HostDriver",
    "OpenBed",
    "check_id",
    "run_check",
]
