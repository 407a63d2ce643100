"""The device descriptor and the device qualifier (USB 2.0 §9.6.1, §9.6.2)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from usbip_gadget.usb._common import check_fields, check_header
from usbip_gadget.usb._enums import DescriptorType

_DEVICE = struct.Struct("<BBHBBBBHHHBBBB")
_QUALIFIER = struct.Struct("<BBHBBBBBB")


@dataclass(frozen=True, slots=True)
class DeviceDescriptor:
    """The 18-byte device descriptor (USB 2.0 §9.6.1, Table 9-8).

    Fields, by spec name: bcdUSB, bDeviceClass, bDeviceSubClass, bDeviceProtocol,
    bMaxPacketSize0, idVendor, idProduct, bcdDevice, iManufacturer, iProduct, iSerialNumber,
    bNumConfigurations. bLength and bDescriptorType are implied.
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

    SIZE = 18

    def __post_init__(self) -> None:
        u8 = (
            "b_device_class",
            "b_device_sub_class",
            "b_device_protocol",
            "b_max_packet_size0",
            "i_manufacturer",
            "i_product",
            "i_serial_number",
            "b_num_configurations",
        )
        check_fields(self, u8=u8, u16=("bcd_usb", "id_vendor", "id_product", "bcd_device"))

    def pack(self) -> bytes:
        """The 18 bytes of the descriptor."""
        return _DEVICE.pack(
            self.SIZE,
            DescriptorType.DEVICE,
            self.bcd_usb,
            self.b_device_class,
            self.b_device_sub_class,
            self.b_device_protocol,
            self.b_max_packet_size0,
            self.id_vendor,
            self.id_product,
            self.bcd_device,
            self.i_manufacturer,
            self.i_product,
            self.i_serial_number,
            self.b_num_configurations,
        )

    @classmethod
    def parse(cls, data: bytes) -> DeviceDescriptor:
        """Decode exactly one 18-byte device descriptor; ``DescriptorError`` otherwise."""
        check_header(data, "device descriptor", DescriptorType.DEVICE, (cls.SIZE,))
        return cls(*_DEVICE.unpack(data)[2:])


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

    SIZE = 10

    def __post_init__(self) -> None:
        u8 = (
            "b_device_class",
            "b_device_sub_class",
            "b_device_protocol",
            "b_max_packet_size0",
            "b_num_configurations",
            "b_reserved",
        )
        check_fields(self, u8=u8, u16=("bcd_usb",))

    def pack(self) -> bytes:
        """The 10 bytes of the descriptor."""
        return _QUALIFIER.pack(
            self.SIZE,
            DescriptorType.DEVICE_QUALIFIER,
            self.bcd_usb,
            self.b_device_class,
            self.b_device_sub_class,
            self.b_device_protocol,
            self.b_max_packet_size0,
            self.b_num_configurations,
            self.b_reserved,
        )

    @classmethod
    def parse(cls, data: bytes) -> DeviceQualifier:
        """Decode exactly one 10-byte device qualifier; ``DescriptorError`` otherwise."""
        check_header(data, "device qualifier", DescriptorType.DEVICE_QUALIFIER, (cls.SIZE,))
        return cls(*_QUALIFIER.unpack(data)[2:])
