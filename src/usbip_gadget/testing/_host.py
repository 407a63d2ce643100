"""The host side of ``FakeGadget``: a USB host, the UDC and the composite layer above f_fs.

``FakeHost`` is what a test drives: plug and unplug (``connect``, ``disconnect``, ``unbind``),
``suspend`` and ``resume``, control transfers on ep0 and bulk/interrupt transfers on the data
endpoints. Standard requests are answered here, as the UDC and composite.c would, and never
reach the gadget's ep0 events; everything else becomes a SETUP event (see ``FakeGadget``).

What the host reads is a ``HostView`` (``_view``); requests for what it does not model stall.
The host drives the function through ``Function`` and ``FunctionEndpoint``: what the UDC and
composite.c reach of ``FakeGadget`` and its endpoints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from usbip_gadget._errors import UsbipGadgetError
from usbip_gadget.gadget import Ep0EventType, Remap
from usbip_gadget.testing._view import HostView
from usbip_gadget.usb import (
    Configuration,
    DescriptorType,
    EndpointDescriptor,
    FeatureSelector,
    Request,
    RequestType,
    SetupPacket,
    TransferType,
    encode_lang_ids,
    encode_string,
)

DEFAULT_HOST_TIMEOUT = 5.0
_SELF_POWERED = 0x40  # bmAttributes D6 (USB 2.0 §9.6.3)


class HostError(UsbipGadgetError):
    """A transfer failed as the fake host sees it (what a URB status would report)."""


class HostStall(HostError):
    """The device stalled the request or the endpoint is halted (-EPIPE)."""


class HostTimeout(HostError):
    """The gadget did not answer a control request within ``FakeHost.timeout``."""


class HostBabble(HostError):
    """The device sent a packet larger than the room left in the transfer (-EOVERFLOW)."""


@dataclass(eq=False)
class Control:
    """One forwarded control transfer: ``setup`` as the SETUP event shows it, the host's data.

    The host waits on ``done``; the first ``finish`` decides the outcome, later ones are
    ignored (a gadget answering after the host gave up answers into the void).
    """

    setup: SetupPacket
    data_out: bytes
    done: trio.Event = field(default_factory=trio.Event)
    result: bytes | HostError = b""

    def finish(self, result: bytes | HostError) -> None:
        """Complete the transfer with data (IN), ``b""`` (OUT acknowledged) or an error."""
        if not self.done.is_set():
            self.result = result
            self.done.set()

    def outcome(self) -> bytes:
        """The data, or the error raised."""
        if isinstance(self.result, HostError):
            raise self.result
        return self.result


class FunctionEndpoint(Protocol):
    """A data endpoint as the UDC reaches it (``FakeEndpoint``)."""

    @property
    def descriptor(self) -> EndpointDescriptor: ...

    @property
    def halted(self) -> bool: ...

    async def host_in(self, length: int) -> bytes: ...

    async def host_out(self, data: bytes, *, zero_packet: bool) -> None: ...

    def host_set_halt(self, halted: bool) -> None: ...


class Function(Protocol):
    """The function as the UDC and composite.c reach it (``FakeGadget``)."""

    @property
    def configuration(self) -> Configuration: ...

    @property
    def ep0_remap(self) -> Remap: ...

    def find_endpoint(self, address: int) -> FunctionEndpoint | None: ...

    def endpoint(self, address: int) -> FunctionEndpoint: ...

    def host_event(self, kind: Ep0EventType, control: Control | None = None) -> None: ...

    def host_set_alt(self) -> None: ...

    def host_disable(self) -> None: ...


def _check_data(setup: SetupPacket, data: bytes) -> None:
    if setup.is_in and data:
        raise ValueError("an IN control request carries no data from the host")
    if not setup.is_in and len(data) != setup.w_length:
        raise ValueError(f"OUT request with wLength {setup.w_length} but {len(data)} data bytes")


Handler = Callable[[SetupPacket], bytes]


class FakeHost:
    """The host, UDC and composite layer in front of a ``FakeGadget`` (see the module docstring).

    Observation: ``setups_seen`` (every SETUP the host sent, host numbering), ``attached``,
    ``address``, ``configuration`` (bConfigurationValue, 0 when unconfigured), ``suspended``,
    ``remote_wakeup``. ``timeout`` bounds the wait for the gadget's answer to a control request.
    """

    def __init__(self, gadget: Function, view: HostView, *, timeout: float) -> None:
        self._gadget = gadget
        self.view = view
        self.timeout = timeout
        self.setups_seen: list[SetupPacket] = []
        self.attached = False
        self.address = 0
        self.configuration = 0
        self.suspended = False
        self.remote_wakeup = False
        self._bound = False
        self._control: Control | None = None
        to_remote = view.remap.inverse()
        ep0 = gadget.ep0_remap
        self._ep0_interfaces = _compose(to_remote.interfaces, ep0.interfaces)
        self._ep0_endpoints = _compose(to_remote.endpoints, ep0.endpoints)
        self._handlers = self._standard_handlers()

    # -- lifecycle -------------------------------------------------------------------------

    def connect(self) -> None:
        """Plug in: bind the function to the UDC if it is not (BIND), then attach."""
        if not self._bound:
            self._bound = True
            self._gadget.host_event(Ep0EventType.BIND)
        self.attached = True
        self.address = 0

    def disconnect(self) -> None:
        """Unplug: the composite layer resets the configuration (DISABLE when configured)."""
        self._abort_control("device disconnected")
        if self.configuration:
            self._reset_config()
        self.attached = self.suspended = self.remote_wakeup = False
        self.address = 0

    def unbind(self) -> None:
        """Unbind the gadget from the UDC: disconnect, then UNBIND."""
        if self.attached:
            self.disconnect()
        if self._bound:
            self._bound = False
            self._gadget.host_event(Ep0EventType.UNBIND)

    def suspend(self) -> None:
        """Bus suspend: SUSPEND, only when configured (composite_suspend)."""
        self._check_attached()
        self.suspended = True
        if self.configuration:
            self._gadget.host_event(Ep0EventType.SUSPEND)

    def resume(self) -> None:
        """Bus resume: RESUME, only when configured (composite_resume)."""
        self._check_attached()
        self.suspended = False
        if self.configuration:
            self._gadget.host_event(Ep0EventType.RESUME)

    def clear_halt(self, address: int) -> None:
        """The UDC handling CLEAR_FEATURE(ENDPOINT_HALT) on ``address``."""
        self._gadget.endpoint(address).host_set_halt(False)

    # -- transfers -------------------------------------------------------------------------

    async def control(self, setup: SetupPacket, data: bytes = b"") -> bytes:
        """One control transfer: the IN data (``b""`` for OUT requests).

        ``HostStall`` when the device stalls, ``HostTimeout`` when the gadget does not answer
        a forwarded request within ``timeout``, ``HostError`` when a newer SETUP or an event
        aborts it. OUT data must be exactly wLength bytes.
        """
        self._check_attached()
        _check_data(setup, data)
        self.setups_seen.append(setup)
        self._abort_control("superseded by a new SETUP")
        await trio.lowlevel.checkpoint()
        handler = self._handlers.get((setup.bm_request_type, setup.b_request))
        if handler is not None:
            return handler(setup)[: setup.w_length]
        return await self._forward(setup, data)

    async def transfer_in(self, address: int, length: int) -> bytes:
        """An IN URB of ``length`` bytes: packets up to a short one or ``length`` bytes."""
        return await self._data_endpoint(address, is_in=True).host_in(length)

    async def transfer_out(self, address: int, data: bytes, *, zero_packet: bool = False) -> None:
        """An OUT URB: ``data`` as packets (plus a ZLP with ``zero_packet``), all taken."""
        await self._data_endpoint(address, is_in=False).host_out(data, zero_packet=zero_packet)

    def _data_endpoint(self, address: int, *, is_in: bool) -> FunctionEndpoint:
        self._check_attached()
        endpoint = self._gadget.find_endpoint(address)
        if endpoint is None or endpoint.descriptor.is_in != is_in:
            raise HostError(
                f"the device has no {'IN' if is_in else 'OUT'} endpoint 0x{address:02x}"
            )
        return endpoint

    def _check_attached(self) -> None:
        if not self.attached:
            raise HostError("the device is not attached")

    def _abort_control(self, reason: str) -> None:
        if self._control is not None:
            self._control.finish(HostError(f"control transfer aborted: {reason}"))
            self._control = None

    async def _forward(self, setup: SetupPacket, data: bytes) -> bytes:
        """f_fs: a SETUP event with wIndex in ep0 numbering; wait for the gadget's answer."""
        event_setup = self._ep0_setup(setup)
        if event_setup is None:
            raise HostStall(f"no function claims {setup}")
        control = self._control = Control(event_setup, data)
        self._gadget.host_event(Ep0EventType.SETUP, control)
        try:
            with trio.move_on_after(self.timeout):
                await control.done.wait()
        finally:
            control.finish(HostTimeout(f"the gadget did not answer within {self.timeout} s"))
        return control.outcome()

    def _ep0_setup(self, setup: SetupPacket) -> SetupPacket | None:
        """ffs_func_setup: interface and endpoint wIndex replaced whole; None if unclaimed."""
        if setup.recipient == RequestType.INTERFACE:
            table = self._ep0_interfaces
        elif setup.recipient == RequestType.ENDPOINT:
            table = self._ep0_endpoints
        else:
            return setup  # FUNCTIONFS_ALL_CTRL_RECIP: device and other requests as they are
        index = table.get(setup.w_index & 0xFF)
        return None if index is None else dataclasses.replace(setup, w_index=index)

    # -- standard requests: the UDC and composite.c ----------------------------------------

    def _standard_handlers(self) -> dict[tuple[int, int], Handler]:
        device_in, interface_in = RequestType.IN, RequestType.IN | RequestType.INTERFACE
        endpoint_in = RequestType.IN | RequestType.ENDPOINT
        return {
            (device_in, Request.GET_DESCRIPTOR): self._get_descriptor,
            (RequestType.OUT, Request.SET_ADDRESS): self._set_address,
            (device_in, Request.GET_CONFIGURATION): lambda _: bytes((self.configuration,)),
            (RequestType.OUT, Request.SET_CONFIGURATION): self._set_configuration,
            (device_in, Request.GET_STATUS): self._device_status,
            (interface_in, Request.GET_STATUS): lambda setup: self._interface(setup, bytes(2)),
            (endpoint_in, Request.GET_STATUS): self._endpoint_status,
            (RequestType.OUT, Request.SET_FEATURE): self._device_feature,
            (RequestType.OUT, Request.CLEAR_FEATURE): self._device_feature,
            (RequestType.ENDPOINT, Request.SET_FEATURE): self._endpoint_feature,
            (RequestType.ENDPOINT, Request.CLEAR_FEATURE): self._endpoint_feature,
            (RequestType.INTERFACE, Request.SET_INTERFACE): self._set_interface,
            (interface_in, Request.GET_INTERFACE): lambda setup: self._interface(setup, b"\x00"),
        }

    def _get_descriptor(self, setup: SetupPacket) -> bytes:
        kind, index = setup.w_value >> 8, setup.w_value & 0xFF
        if kind == DescriptorType.DEVICE:
            return self.view.device
        if kind == DescriptorType.CONFIGURATION and index == 0:
            return self.view.configuration
        if kind == DescriptorType.STRING:
            return self._string(index, setup.w_index)
        raise HostStall(f"GET_DESCRIPTOR type 0x{kind:02x} index {index}")

    def _string(self, index: int, lang_id: int) -> bytes:
        if index == 0 and self.view.languages:
            return encode_lang_ids(self.view.languages)
        text = self.view.strings.get(lang_id, {}).get(index)
        if index == 0 or text is None:
            raise HostStall(f"no string {index} in LANGID 0x{lang_id:04x}")
        return encode_string(text)

    def _set_address(self, setup: SetupPacket) -> bytes:
        self.address = setup.w_value & 0x7F
        return b""

    def _set_configuration(self, setup: SetupPacket) -> bytes:
        """composite.c set_config: reset the old one (DISABLE), set every interface (ENABLE)."""
        value = setup.w_value
        if value not in (0, self._gadget.configuration.b_configuration_value):
            raise HostStall(f"no configuration {value}")
        if self.configuration:
            self._reset_config()
        if value:
            self.configuration = value
            for _ in self._ep0_interfaces:
                self._gadget.host_set_alt()
        return b""

    def _reset_config(self) -> None:
        self._gadget.host_disable()
        self.configuration = 0

    def _interface(self, setup: SetupPacket, answer: bytes = b"") -> bytes:
        """``answer`` if wIndex names an interface of the current configuration."""
        number = setup.w_index & 0xFF
        if not self.configuration or number not in self._ep0_interfaces:
            raise HostStall(f"no interface {number} in the current configuration")
        return answer

    def _set_interface(self, setup: SetupPacket) -> bytes:
        self._interface(setup)
        if setup.w_value:  # f_fs has no get_alt(): composite.c accepts only alt 0
            raise HostStall(f"alternate setting {setup.w_value} refused")
        self._gadget.host_set_alt()
        return b""

    def _device_status(self, setup: SetupPacket) -> bytes:
        powered = bool(self._gadget.configuration.bm_attributes & _SELF_POWERED)
        return bytes((powered | self.remote_wakeup << 1, 0))

    def _device_feature(self, setup: SetupPacket) -> bytes:
        if setup.w_value == FeatureSelector.DEVICE_REMOTE_WAKEUP:
            self.remote_wakeup = setup.b_request == Request.SET_FEATURE
            return b""
        if setup.w_value == FeatureSelector.TEST_MODE and setup.b_request == Request.SET_FEATURE:
            return b""
        raise HostStall(f"device feature {setup.w_value}")

    def _endpoint(self, setup: SetupPacket) -> FunctionEndpoint | None:
        """The endpoint wIndex names; None for ep0. Others exist only when configured."""
        address = setup.w_index & 0xFF
        if address & 0x7F == 0:
            return None
        endpoint = self._gadget.find_endpoint(address)
        if endpoint is None or not self.configuration:
            raise HostStall(f"no endpoint 0x{address:02x} in the current configuration")
        return endpoint

    def _endpoint_status(self, setup: SetupPacket) -> bytes:
        endpoint = self._endpoint(setup)
        return bytes((int(endpoint is not None and endpoint.halted), 0))

    def _endpoint_feature(self, setup: SetupPacket) -> bytes:
        endpoint = self._endpoint(setup)
        if setup.w_value != FeatureSelector.ENDPOINT_HALT:
            raise HostStall(f"endpoint feature {setup.w_value}")
        if endpoint is None:
            return b""
        if endpoint.descriptor.transfer_type == TransferType.ISOCHRONOUS:
            raise HostStall("isochronous endpoints have no halt feature")
        endpoint.host_set_halt(setup.b_request == Request.SET_FEATURE)
        return b""


def _compose(first: Iterable[tuple[int, int]], second: Iterable[tuple[int, int]]) -> dict[int, int]:
    """a → c for the pairs (a, b) of ``first`` and (b, c) of ``second``."""
    then = dict(second)
    return {a: then[b] for a, b in first if b in then}


__all__ = [
    "DEFAULT_HOST_TIMEOUT",
    "Control",
    "FakeHost",
    "Function",
    "FunctionEndpoint",
    "HostBabble",
    "HostError",
    "HostStall",
    "HostTimeout",
]
