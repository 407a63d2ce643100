"""What the bridge needs from a gadget backend, whatever kernel interface is behind it.

A backend is a gadget that is already plugged into a USB device controller and replays one
remote configuration. It reports the host's requests and state changes as ep0 events
(``FfsEvent``: BIND, UNBIND, ENABLE, DISABLE, SETUP, SUSPEND, RESUME), answers the data
stage of the pending SETUP, and gives one ``GadgetEndpoint`` per remote endpoint.

Both the FunctionFS backend and the in-memory ``FakeGadget`` implement it; the bridge is
tested against the fake and, in the kernel tier, runs on the real one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from usbip_gadget._errors import GadgetError
from usbip_gadget.gadget._ffs_events import FfsEvent
from usbip_gadget.gadget._remap import Remap
from usbip_gadget.usb import EndpointDescriptor


class EndpointShutdown(GadgetError):
    """The host disabled the endpoint (configuration change, reset or unplug) mid-transfer."""


class GadgetEndpoint(Protocol):
    """One data endpoint of the gadget, named by the remote device's descriptor."""

    @property
    def descriptor(self) -> EndpointDescriptor:
        """The remote endpoint this one replays (address, type, wMaxPacketSize)."""
        ...

    async def read(self, length: int) -> bytes:
        """OUT: one transfer from the host, ending at a short packet or at ``length`` bytes.

        A zero-length packet from the host gives ``b""``. ``EndpointShutdown`` when the
        host disables the endpoint.
        """
        ...

    async def write(self, data: bytes) -> None:
        """IN: queue ``data`` for the host and return once the host has taken it all.

        The data go out as full packets and a short last one; ``b""`` sends a zero-length
        packet. ``EndpointShutdown`` when the host disables the endpoint.
        """
        ...

    async def halt(self) -> None:
        """Stall the endpoint; the host's CLEAR_FEATURE(ENDPOINT_HALT) clears it."""
        ...


class GadgetBackend(Protocol):
    """A plugged gadget: ep0 events and their data stage, and the data endpoints."""

    @property
    def name(self) -> str:
        """The kernel interface, for the user ("functionfs")."""
        ...

    @property
    def endpoints(self) -> Sequence[GadgetEndpoint]:
        """One per remote endpoint, in the configuration's order."""
        ...

    @property
    def ep0_remap(self) -> Remap:
        """Remote → the numbering of wIndex in SETUP events (``inverse()`` for the way back)."""
        ...

    async def events(self) -> list[FfsEvent]:
        """Wait for the next ep0 events (at least one)."""
        ...

    async def reply(self, data: bytes) -> None:
        """Data stage of the pending IN SETUP: send ``data`` (at most wLength bytes)."""
        ...

    async def receive(self) -> bytes:
        """OUT SETUP: read its wLength bytes of data, or acknowledge one without data."""
        ...

    async def stall(self) -> None:
        """Stall the pending SETUP."""
        ...


__all__ = ["EndpointShutdown", "GadgetBackend", "GadgetEndpoint"]
