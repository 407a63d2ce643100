"""An in-memory gadget backend that behaves like composite.c + FunctionFS + a UDC.

``FakeGadget`` implements ``GadgetBackend`` as FunctionFS would with the flags VIRTUAL_ADDR |
ALL_CTRL_RECIP | CONFIG0_SETUP; ``FakeGadget.host`` (``FakeHost``) drives it from the host's
side, and its data endpoints are ``FakeEndpoint``s. ep0 follows
drivers/usb/gadget/function/f_fs.c:

- Events merge as in ``__ffs_event_add`` (so at most four wait): a SETUP drops an unread
  SETUP, a SUSPEND an unread SUSPEND, a RESUME unread SUSPENDs and RESUMEs; BIND, UNBIND,
  ENABLE and DISABLE drop all but SUSPEND and RESUME (an unread BIND or DISABLE included).
- A SETUP read by ``events()`` is pending until ``reply``, ``receive`` or ``stall``; any new
  event cancels it, and the next ep0 call raises ``GadgetError`` once (-EIDRM). ``reply`` on
  an OUT SETUP or ``receive`` on an IN one stalls it and raises ``GadgetError`` (-EL2HLT);
  with nothing pending they raise ``GadgetError`` (-ESRCH). ``events()`` with a SETUP pending
  raises ``GadgetError``: on the real ep0 that read would be the data stage.

Endpoint-recipient requests are matched by the whole address here; f_fs matches the number of
the address ``usb_ep_autoconfig`` chose, which may differ from the one VIRTUAL_ADDR shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from usbip_gadget._errors import FunctionFsUnsupported, GadgetError
from usbip_gadget.gadget import Ep0Event, Ep0EventType, Remap
from usbip_gadget.gadget.functionfs import check_expressible
from usbip_gadget.testing._endpoint import FakeEndpoint
from usbip_gadget.testing._host import (
    DEFAULT_HOST_TIMEOUT,
    Control,
    FakeHost,
    HostError,
    HostStall,
)
from usbip_gadget.testing._view import host_view
from usbip_gadget.usb import Configuration, DeviceSnapshot

_PM_EVENTS = (Ep0EventType.SUSPEND, Ep0EventType.RESUME)


def _survives(old: Ep0EventType, new: Ep0EventType) -> bool:
    """Whether an unread ``old`` event stays queued when ``new`` arrives (__ffs_event_add)."""
    if new in (Ep0EventType.SETUP, Ep0EventType.SUSPEND):
        return old != new
    if new == Ep0EventType.RESUME:
        return old not in _PM_EVENTS
    return old in _PM_EVENTS


class FakeGadget:
    """A ``GadgetBackend`` in memory, replaying ``snapshot.configurations[config_index]``.

    ``host`` drives it (``connect()`` first); ``host_remap`` maps remote numbers to what the
    host sees, ``ep0_remap`` to the wIndex of SETUP events. ``FunctionFsUnsupported`` if FunctionFS
    could not express the configuration. See the module docstring for the ep0 rules. With
    ``aio`` False the endpoints take one read or write at a time (GadgetFS's blocking files).
    """

    def __init__(
        self,
        snapshot: DeviceSnapshot,
        *,
        config_index: int = 0,
        host_timeout: float = DEFAULT_HOST_TIMEOUT,
        aio: bool = True,
    ) -> None:
        if not 0 <= config_index < len(snapshot.configurations):
            raise GadgetError(f"the snapshot has no configuration at index {config_index}")
        config = snapshot.configurations[config_index]
        reasons = check_expressible(config)
        if reasons:
            raise FunctionFsUnsupported(reasons)
        self.configuration: Configuration = config
        self._endpoints = tuple(FakeEndpoint(ep, aio=aio) for ep in config.endpoints())
        self._ep0_remap = Remap.for_ep0_events(config, virtual_addr=True)
        self._queue: list[Ep0Event] = []
        self._queued_setup: Control | None = None  # the transfer of the SETUP in _queue
        self._pending: Control | None = None  # read by events(), awaiting its data stage
        self._cancelled = False
        self._lot = trio.lowlevel.ParkingLot()
        view = host_view(snapshot, config)
        self.host_remap: Remap = view.remap
        self.host = FakeHost(self, view, timeout=host_timeout)

    @property
    def name(self) -> str:
        """The kernel interface this stands for."""
        return "fake"

    @property
    def endpoints(self) -> Sequence[FakeEndpoint]:
        """One per remote endpoint, in the configuration's order."""
        return self._endpoints

    @property
    def ep0_remap(self) -> Remap:
        """Remote → the numbering of wIndex in SETUP events."""
        return self._ep0_remap

    @property
    def queued_events(self) -> tuple[Ep0Event, ...]:
        """The events ``events()`` would return now (for tests)."""
        return tuple(self._queue)

    def find_endpoint(self, address: int) -> FakeEndpoint | None:
        """The endpoint with bEndpointAddress ``address``, if there is one."""
        return next((ep for ep in self._endpoints if ep.address == address), None)

    def endpoint(self, address: int) -> FakeEndpoint:
        """The endpoint with bEndpointAddress ``address``; ``GadgetError`` if none."""
        endpoint = self.find_endpoint(address)
        if endpoint is None:
            raise GadgetError(f"no endpoint 0x{address:02x}")
        return endpoint

    # -- ep0 -------------------------------------------------------------------------------

    async def events(self) -> list[Ep0Event]:
        """Wait for events and return all those queued (at least one)."""
        await trio.lowlevel.checkpoint()
        if self._pending is not None:
            raise GadgetError("a SETUP is pending: reply, receive or stall before reading events")
        self._check_cancelled("events")
        while not self._queue:
            await self._lot.park()
        events, self._queue = self._queue, []
        if any(event.type == Ep0EventType.SETUP for event in events):
            self._pending, self._queued_setup = self._queued_setup, None
        return events

    async def reply(self, data: bytes) -> None:
        """IN data stage of the pending SETUP: ``data``, cut to wLength."""
        await trio.lowlevel.checkpoint()
        control = self._take_pending("reply")
        if not control.setup.is_in:
            control.finish(HostStall("the gadget wrote to an OUT request"))
            raise GadgetError("reply to an OUT SETUP: FunctionFS stalls it")
        control.finish(data[: control.setup.w_length])

    async def receive(self) -> bytes:
        """OUT data stage of the pending SETUP: the host's data (``b""`` if none), acked."""
        await trio.lowlevel.checkpoint()
        control = self._take_pending("receive")
        if control.setup.is_in:
            control.finish(HostStall("the gadget read an IN request"))
            raise GadgetError("receive on an IN SETUP: FunctionFS stalls it")
        control.finish(b"")
        return control.data_out

    async def stall(self) -> None:
        """Stall the pending SETUP."""
        await trio.lowlevel.checkpoint()
        self._take_pending("stall").finish(HostStall("the gadget stalled the request"))

    def _check_cancelled(self, what: str) -> None:
        if self._cancelled:
            self._cancelled = False
            raise GadgetError(f"{what}: the SETUP was cancelled by a newer event")

    def _take_pending(self, what: str) -> Control:
        self._check_cancelled(what)
        if self._pending is None:
            raise GadgetError(f"{what}: no SETUP is pending")
        control, self._pending = self._pending, None
        return control

    # -- the function as composite.c drives it (FakeHost) ---------------------------------

    def host_event(self, kind: Ep0EventType, control: Control | None = None) -> None:
        """__ffs_event_add: cancel the pending SETUP, merge the queue, wake ``events()``."""
        if self._pending is not None:
            self._pending.finish(HostError(f"control transfer aborted by {kind.name}"))
            self._pending, self._cancelled = None, True
        self._queue = [event for event in self._queue if _survives(event.type, kind)]
        kept = any(event.type == Ep0EventType.SETUP for event in self._queue)
        if self._queued_setup is not None and not kept:
            self._queued_setup.finish(HostError(f"SETUP dropped for {kind.name}"))
            self._queued_setup = None
        self._queue.append(Ep0Event(kind, None if control is None else control.setup))
        if control is not None:
            self._queued_setup = control
        self._lot.unpark_all()

    def host_set_alt(self) -> None:
        """ffs_func_set_alt(alt 0): endpoints disabled and enabled again, then ENABLE."""
        for endpoint in self._endpoints:
            endpoint._disable()
            endpoint._enable()
        self.host_event(Ep0EventType.ENABLE)

    def host_disable(self) -> None:
        """ffs_func_disable: endpoints disabled, then DISABLE."""
        for endpoint in self._endpoints:
            endpoint._disable()
        self.host_event(Ep0EventType.DISABLE)


__all__ = ["FakeGadget"]
