"""What the host will read differently from a FunctionFS gadget, known before binding."""

from __future__ import annotations

from usbip_gadget.gadget._differences import (
    EP0_PACKET,
    USB_2_0,
    Difference,
    Patched,
    descriptors,
    differences,
)
from usbip_gadget.gadget._remap import interface_numbers
from usbip_gadget.usb import (
    DescriptorType,
    DeviceDescriptor,
    DeviceSnapshot,
    InterfaceDescriptor,
)

_NUMBER = InterfaceDescriptor.LAYOUT.offset_of("bInterfaceNumber")


def functionfs_differences(
    snapshot: DeviceSnapshot, config_index: int
) -> tuple[tuple[Difference, ...], list[str]]:
    """What the composite layer changes that can be known before binding."""
    config = snapshot.configurations[config_index]
    remote = snapshot.device_raw + snapshot.configurations_raw[config_index]
    shown = Patched(remote, 0)
    device = DeviceDescriptor.LAYOUT
    shown.put(0, device, "bcdUSB", USB_2_0, "the composite layer reports USB 2.0 (2.01 with LPM)")
    shown.put(0, device, "bMaxPacketSize0", EP0_PACKET, "the controller's ep0 packet size")
    shown.put(0, device, "bNumConfigurations", 1, "one configuration is replayed")
    numbers = interface_numbers(config)
    base = len(snapshot.device_raw)
    raw = snapshot.configurations_raw[config_index]
    for at, desc in descriptors(raw):
        if desc[1] == DescriptorType.INTERFACE and len(desc) > _NUMBER:
            local = numbers.get(desc[_NUMBER], desc[_NUMBER])
            why = "the composite layer numbers from 0"
            shown.put(base + at, InterfaceDescriptor.LAYOUT, "bInterfaceNumber", local, why)
    found = differences(remote, bytes(shown.data), shown.notes)
    return found, [
        "FunctionFS: string indexes and endpoint addresses are assigned by the kernel when "
        "the gadget binds (composite string ids, usb_ep_autoconfig); they match the remote's "
        "only where the kernel's choice coincides"
    ]
