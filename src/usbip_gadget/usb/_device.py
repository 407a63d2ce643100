"""The device descriptor and the device qualifier (USB 2.0 §9.6.1, §9.6.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from usbip_gadget.usb._common import check_header
from usbip_gadget.usb._enums import DescriptorType
from usbip_gadget.usb._fields import Layout
from usbip_gadget.usb._layouts import DEVICE, DEVICE_QUALIFIER


@dataclass(frozen=True, slots=True)
class DeviceDescriptor:
    """The 18-byte device descriptor (USB 2.0 §9.6.1, Table 9-8).

    Fields, by spec name: bcdUSB, bDeviceClass, bDeviceSubClass, bDeviceProtocol,
    bMaxPacketSize0, idVendor, idProduct, bcdDevice, iManufacturer, iProduct, iSerialNumber,
    bNumConfigurations. bLength and bDescriptorType are implied. ``LAYOUT`` is the field
    table (offsets by spec name).
    """

    bcd_usb: int
    b_device_class: int
    b_device_sub_class: int
    b_device_protocol: int
    b_max_packet_size0: int
    id_vendor: int
    id_product: int
    bcd_device: int
    i_manufacturer: int
    i_product: int
    i_serial_number: int
    b_num_configurations: int

    SIZE: ClassVar[int] = DEVICE.size
    LAYOUT: ClassVar[Layout] = DEVICE

    def __post_init__(self) -> None:
        DEVICE.check(self)

    def pack(self) -> bytes:
        """The 18 bytes of the descriptor."""
        return DEVICE.pack(self)

    @classmethod
    def parse(cls, data: bytes) -> DeviceDescriptor:
        """Decode exactly one 18-byte device descriptor; ``DescriptorError`` otherwise."""
        check_header(data, "device descriptor", DescriptorType.DEVICE, (cls.SIZE,))
        return cls(*DEVICE.values(data))


@dataclass(frozen=True, slots=True)
class DeviceQualifier:
    """The 10-byte device qualifier (USB 2.0 §9.6.2, Table 9-9).

    Fields: bcdUSB, bDeviceClass, bDeviceSubClass, bDeviceProtocol, bMaxPacketSize0,
    bNumConfigurations, bReserved (kept so that unusual devices round-trip byte for byte).
    """

    bcd_usb: int
    b_device_class: int
    b_device_sub_class: int
    b_device_protocol: int
    b_max_packet_size0: int
    b_num_configurations: int
    b_reserved: int = 0

    SIZE: ClassVar[int] = DEVICE_QUALIFIER.size
    LAYOUT: ClassVar[Layout] = DEVICE_QUALIFIER

    def __post_init__(self) -> None:
        DEVICE_QUALIFIER.check(self)

    def pack(self) -> bytes:
        """The 10 bytes of the descriptor."""
        return DEVICE_QUALIFIER.pack(self)

    @classmethod
    def parse(cls, data: bytes) -> DeviceQualifier:
        """Decode exactly one 10-byte device qualifier; ``DescriptorError`` otherwise."""
        check_header(data, "device qualifier", DescriptorType.DEVICE_QUALIFIER, (cls.SIZE,))
        return cls(*DEVICE_QUALIFIER.values(data))
