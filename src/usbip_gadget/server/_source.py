"""What the server needs from the local USB stack, whatever library is behind it.

A *device source* lists the local devices with the fields OP_REP_DEVLIST carries and opens
one for export. An opened ``LocalDevice`` is claimed: the kernel drivers of its interfaces
stay detached until ``close`` hands the interfaces back to the kernel.

A ``LocalDevice``'s calls are synchronous and may block (the server runs them in worker
threads, at most one per endpoint at a time). They do not raise for what a host controller
reports as a URB status; they return it as a negated Linux errno: ``-EPIPE`` (stall),
``-EOVERFLOW`` (babble), ``-EPROTO`` (transmission error), ``-ETIMEDOUT``, ``-ENODEV`` (the
device is gone), ``-EINVAL`` (a request the device or library refuses).

``read`` and ``write`` are *bounded*: when their timeout expires they return ``-ETIMEDOUT``
with what moved so far, and calling again with the rest continues the same transfer. That
is what lets the server stop a transfer it was asked to unlink without losing data: a
bulk or interrupt transfer ends at a short packet or when it is full, so whole packets that
arrived before the timeout belong to it and nothing else, and what comes after them is
still in the device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from usbip_gadget._errors import ExportError
from usbip_gadget.protocol import ExportedDevice
from usbip_gadget.usb import SetupPacket, TransferType


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """One endpoint of the device's current configuration and alternate settings.

    Fields from the endpoint descriptor: bEndpointAddress, the transfer type of
    bmAttributes, the packet size (bits 10..0 of wMaxPacketSize) and bInterval; and the
    bInterfaceNumber of its interface.
    """

    address: int
    transfer_type: TransferType
    max_packet: int
    interval: int = 0
    interface: int = 0


@dataclass(frozen=True, slots=True)
class Moved:
    """What one call moved: its status (0 or a negated errno), the IN data, the byte count."""

    status: int = 0
    data: bytes = b""
    length: int = 0

    @classmethod
    def received(cls, data: bytes, status: int = 0) -> Moved:
        """An IN result: ``data`` and its length."""
        return cls(status, data, len(data))


class LocalDevice(Protocol):
    """A claimed local device. See the module docstring for the status conventions."""

    @property
    def busid(self) -> str:
        """The sysfs name ("1-1", "3-2.4")."""
        ...

    def endpoints(self) -> Mapping[int, EndpointInfo]:
        """The endpoints of the current configuration and alternate settings, by address.

        Answered from what the device object already knows: no I/O, safe from any thread.
        """
        ...

    def control(self, setup: SetupPacket, data: bytes, timeout: float) -> Moved:
        """A control transfer on endpoint 0 with ``data`` as the OUT data stage."""
        ...

    def read(self, address: int, length: int, timeout: float) -> Moved:
        """Bulk or interrupt IN of up to ``length`` bytes; bounded (see the module docstring)."""
        ...

    def write(self, address: int, data: bytes, timeout: float) -> Moved:
        """Bulk or interrupt OUT of ``data`` (``b""``: a zero-length packet); bounded."""
        ...

    def set_configuration(self, value: int) -> int:
        """SET_CONFIGURATION through the USB stack (bConfigurationValue ``value``); a status."""
        ...

    def set_interface(self, interface: int, alternate: int) -> int:
        """SET_INTERFACE through the USB stack; a status."""
        ...

    def clear_halt(self, address: int) -> int:
        """CLEAR_FEATURE(ENDPOINT_HALT) through the USB stack (host toggles reset too)."""
        ...

    def reset(self) -> int:
        """A port reset of the device; its configuration is restored; a status."""
        ...

    def plugged(self) -> bool:
        """Whether the device is still there: cheap, no I/O to the device, any thread.

        A device that is not being used says nothing when it is pulled out; the server asks
        this now and then so that the session ends anyway.
        """
        ...

    def close(self) -> None:
        """Release the device and give its interfaces back to the kernel. Never raises."""
        ...


class DeviceSource(Protocol):
    """The local devices. Both calls may block; the server runs them in worker threads."""

    def devices(self) -> Sequence[ExportedDevice]:
        """Every device present now, hubs included, as OP_REP_DEVLIST describes them."""
        ...

    def open(self, busid: str) -> LocalDevice:
        """Claim ``busid`` for export; ``ExportError`` if it cannot be."""
        ...


__all__ = ["DeviceSource", "EndpointInfo", "ExportError", "LocalDevice", "Moved"]
