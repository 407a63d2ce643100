"""The bridge: one ep0 loop and one pump per endpoint between a gadget and a remote device.

The ep0 loop reads the gadget's events in order. A SETUP is forwarded to the remote device as
a control URB and its answer (data, acknowledgement or stall) goes back to the host, unless
the control policy refuses it (then it is stalled and never sent); ENABLE
(the host chose the configuration) configures the remote device and starts the pumps;
DISABLE, UNBIND and SUSPEND stop them, which unlinks what they had in flight; RESUME starts
them again. The remote side ending (connection closed, device gone) ends ``run``.
"""

from __future__ import annotations

import contextlib

import trio

from usbip_gadget._errors import (
    GadgetError,
    TransferError,
    TransportError,
    UsbipTimeout,
)
from usbip_gadget._groups import collapse_ours
from usbip_gadget.bridge._control_policy import ControlPolicy
from usbip_gadget.bridge._plans import BULK_ONLY_RESET, EXACT, BulkOnlyPlan, Plan, plans_for
from usbip_gadget.bridge._pumps import Log, clear_remote_halt, make_pump
from usbip_gadget.client import RemoteDevice
from usbip_gadget.gadget import (
    EndpointShutdown,
    Ep0Event,
    Ep0EventType,
    GadgetBackend,
    GadgetEndpoint,
)
from usbip_gadget.usb import Configuration, RequestType, SetupPacket

CONTROL_TIMEOUT = 4.0  # a Linux host gives a control transfer 5 s (USB_CTRL_GET_TIMEOUT)
DEFAULT_DEPTH = 16


def _quiet(_message: str) -> None:
    pass


class Bridge:
    """Moves every transfer between ``gadget`` (the host's side) and ``remote``."""

    def __init__(
        self,
        remote: RemoteDevice,
        gadget: GadgetBackend,
        config: Configuration,
        *,
        depth: int = DEFAULT_DEPTH,
        bulk_urbs: str = EXACT,
        log: Log = _quiet,
        allow_dfu: bool = False,
    ) -> None:
        if depth < 1:
            raise ValueError("read-ahead depth must be at least 1")
        self._remote = remote
        self._gadget = gadget
        self._config = config
        self._depth = depth
        self._log = log
        self._plans: dict[int, Plan] = plans_for(config, bulk_urbs)
        self._requests = ControlPolicy.for_configuration(config, allow_dfu=allow_dfu)
        self._enabled = False
        self._pumps: trio.CancelScope | None = None
        self._pumps_done = trio.Event()
        self._nursery: trio.Nursery | None = None

    async def run(self) -> None:
        """Serve until the remote side fails (its error is raised) or until cancelled."""
        with collapse_ours():
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._watch_remote)
                while True:
                    for event in await self._gadget.events():
                        await self._handle(event)

    async def _watch_remote(self) -> None:
        await self._remote.closed.wait()
        failure = self._remote.failure
        raise failure if failure is not None else TransportError("the connection closed")

    async def _handle(self, event: Ep0Event) -> None:
        kind = event.type
        if kind == Ep0EventType.SETUP and event.setup is not None:
            await self._setup(event.setup)
        elif kind == Ep0EventType.ENABLE:
            self._enabled = True
            await self._configure()
            await self._start_pumps()
        elif kind in (Ep0EventType.DISABLE, Ep0EventType.UNBIND):
            self._enabled = False
            await self._stop_pumps()
        elif kind == Ep0EventType.SUSPEND:
            await self._stop_pumps()
        elif kind == Ep0EventType.RESUME and self._enabled:
            await self._start_pumps()

    # ---------------------------------------------------------------- control

    async def _setup(self, setup: SetupPacket) -> None:
        remote_setup = self._gadget.ep0_remap.setup_to_remote(setup)
        if await self._refused(setup, remote_setup):
            return
        try:
            if setup.is_in:
                data = await self._remote.control(remote_setup, timeout=CONTROL_TIMEOUT)
                await self._gadget.reply(data)
            elif setup.w_length:
                data = await self._gadget.receive()
                await self._control_out(remote_setup, data)
            else:
                await self._remote.control(remote_setup, timeout=CONTROL_TIMEOUT)
                await self._gadget.receive()
        except (TransferError, UsbipTimeout) as exc:
            self._log_request(remote_setup, exc)
            await self._stall()
            return
        except GadgetError as exc:  # the host gave up on this request and sent another
            self._log(f"control request dropped: {exc.one_line()}")
            return
        await self._after(remote_setup)

    async def _refused(self, setup: SetupPacket, remote_setup: SetupPacket) -> bool:
        """Stall a request the control policy refuses, with one log line; whether it did."""
        refusal = self._requests.refusal(remote_setup)
        if refusal is None:
            return False
        self._log(f"refused control request {setup.pack().hex()} from the host: {refusal}")
        await self._stall()
        return True

    async def _control_out(self, setup: SetupPacket, data: bytes) -> None:
        """OUT data the host has already had acknowledged by the controller (f_fs)."""
        sent = SetupPacket(
            setup.bm_request_type, setup.b_request, setup.w_value, setup.w_index, len(data)
        )
        try:
            await self._remote.control(sent, data, timeout=CONTROL_TIMEOUT)
        except (TransferError, UsbipTimeout) as exc:
            self._log_request(setup, exc)

    async def _stall(self) -> None:
        try:
            await self._gadget.stall()
        except GadgetError as exc:
            self._log(f"could not stall ep0: {exc.one_line()}")

    def _log_request(self, setup: SetupPacket, exc: Exception) -> None:
        self._log(f"control request {setup.pack().hex()} failed on the device: {exc}")

    async def _after(self, setup: SetupPacket) -> None:
        """Follow-ups a host's request implies on the remote side."""
        request_type = setup.bm_request_type & ~RequestType.DIRECTION_MASK
        if (request_type, setup.b_request) == (
            RequestType.CLASS | RequestType.INTERFACE,
            BULK_ONLY_RESET,
        ):
            await self._bulk_only_reset(setup.w_index & 0xFF)

    async def _bulk_only_reset(self, interface: int) -> None:
        # Reset recovery: the host clears both bulk halts next, on the controller only.
        plans = {p for p in self._plans.values() if isinstance(p, BulkOnlyPlan)}
        restart = self._pumps is not None
        await self._stop_pumps()
        for plan in plans:
            for address in (plan.in_address, plan.out_address):
                try:
                    await clear_remote_halt(self._remote, address)
                except (TransferError, UsbipTimeout) as exc:
                    self._log(f"interface {interface} reset: {exc}")
        if restart:
            await self._start_pumps()

    async def _configure(self) -> None:
        value = self._config.b_configuration_value
        try:
            await self._remote.control(
                SetupPacket.set_configuration(value), timeout=CONTROL_TIMEOUT
            )
        except (TransferError, UsbipTimeout) as exc:
            self._log(f"the device refused configuration {value}: {exc}")

    # ---------------------------------------------------------------- pumps

    async def _start_pumps(self) -> None:
        await self._stop_pumps()
        for plan in set(self._plans.values()):
            plan.reset()
        assert self._nursery is not None
        await self._nursery.start(self._run_pumps)

    async def _stop_pumps(self) -> None:
        if self._pumps is not None:
            self._pumps.cancel()
            await self._pumps_done.wait()
            self._pumps = None

    async def _run_pumps(self, *, task_status: trio.TaskStatus[None]) -> None:
        done = self._pumps_done = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._pumps = scope
                async with trio.open_nursery() as nursery:
                    for endpoint in self._gadget.endpoints:
                        nursery.start_soon(self._pump, endpoint)
                    task_status.started()
        finally:
            done.set()

    async def _pump(self, endpoint: GadgetEndpoint) -> None:
        plan = self._plans.get(endpoint.descriptor.b_endpoint_address)
        if plan is None:
            return  # an endpoint of an alternate setting: not pumped
        pump = make_pump(self._remote, endpoint, plan, self._depth, self._log)
        with contextlib.suppress(EndpointShutdown):  # the host disabled it; DISABLE follows
            await pump.run()


__all__ = ["CONTROL_TIMEOUT", "DEFAULT_DEPTH", "Bridge"]
