"""Which of the host's control requests the bridge refuses to pass to the remote device.

The host on this board's port may be hostile, and the remote device may be shared or
trusted by others. Standard, class and vendor requests are the device's own language and
pass unchanged (vendor requests are how scanners and printers work), except those that reset
or reprogram the device behind the network:

- hub requests when the device replayed is not a hub: every class request to "other" (a
  hub's port; Linux's usbip-host turns SET_FEATURE(PORT_RESET) into a reset of the real
  device, ``drivers/usb/usbip/stub_rx.c``), and the class requests to the device by which a
  hub changes its own state (CLEAR_FEATURE, SET_FEATURE, SET_DESCRIPTOR: USB 2.0 §11.24.2;
  SET_HUB_DEPTH: USB 3.2 §10.16.2). Other class requests to the device pass: Bluetooth
  adapters take HCI commands as class request 0 to the device;
- SET_DESCRIPTOR (USB 2.0 §9.4.8), which rewrites a device's descriptors;
- DFU class requests (DFU 1.1 §3: interface class 0xFE, subclass 0x01) to a DFU interface,
  which load new firmware, unless ``allow_dfu``.

A refused request is stalled to the host and never sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from usbip_gadget.usb import ClassCode, Configuration, Request, RequestType, SetupPacket

DFU_SUBCLASS = 0x01  # of ClassCode.APPLICATION: Device Firmware Upgrade (DFU 1.1 §4.2.1)
SET_HUB_DEPTH = 12  # USB 3.2 §10.16.2
HUB_DEVICE_REQUESTS = frozenset(
    {Request.CLEAR_FEATURE, Request.SET_FEATURE, Request.SET_DESCRIPTOR, SET_HUB_DEPTH}
)
HUB_REQUEST = "a hub request (such as a port reset) to a device that is not a hub"


@dataclass(frozen=True, slots=True)
class ControlPolicy:
    """The requests refused for one replayed configuration (interface numbers are remote)."""

    hub: bool = False
    dfu_interfaces: frozenset[int] = frozenset()
    allow_dfu: bool = False

    @classmethod
    def for_configuration(cls, config: Configuration, *, allow_dfu: bool = False) -> ControlPolicy:
        alts = config.alt_settings
        return cls(
            hub=any(alt.b_interface_class == ClassCode.HUB for alt in alts),
            dfu_interfaces=frozenset(
                alt.b_interface_number
                for alt in alts
                if (alt.b_interface_class, alt.b_interface_sub_class)
                == (ClassCode.APPLICATION, DFU_SUBCLASS)
            ),
            allow_dfu=allow_dfu,
        )

    def refusal(self, setup: SetupPacket) -> str | None:
        """Why ``setup`` (wIndex in the remote device's numbering) must not reach the device;
        ``None`` when it may."""
        kind, recipient = setup.type, setup.recipient
        if kind == RequestType.STANDARD and setup.b_request == Request.SET_DESCRIPTOR:
            return "SET_DESCRIPTOR would rewrite the device's descriptors"
        if kind != RequestType.CLASS:
            return None
        hub_request = recipient == RequestType.OTHER or (
            recipient == RequestType.DEVICE and setup.b_request in HUB_DEVICE_REQUESTS
        )
        if hub_request and not self.hub:
            return HUB_REQUEST
        interface = setup.w_index & 0xFF
        dfu = recipient == RequestType.INTERFACE and interface in self.dfu_interfaces
        if dfu and not self.allow_dfu:
            return f"a DFU request to interface {interface} (--allow-dfu lets it through)"
        return None


__all__ = ["DFU_SUBCLASS", "HUB_DEVICE_REQUESTS", "HUB_REQUEST", "ControlPolicy"]
