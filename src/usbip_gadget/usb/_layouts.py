"""The field table of every fixed-layout descriptor, and of the SETUP packet.

Rows are (spec name, dataclass attribute or None when computed, struct code) in wire order;
see ``_fields``. The tables sit below the dataclasses because the descriptor-stream parser
needs every structural descriptor's size before any of those classes exists.
"""

from __future__ import annotations

from usbip_gadget.usb._enums import DescriptorType
from usbip_gadget.usb._fields import Layout

# USB 2.0 §9.3, Table 9-2.
SETUP = Layout(
    ("bmRequestType", "bm_request_type", "B"),
    ("bRequest", "b_request", "B"),
    ("wValue", "w_value", "H"),
    ("wIndex", "w_index", "H"),
    ("wLength", "w_length", "H"),
)

# USB 2.0 §9.6.1, Table 9-8.
DEVICE = Layout.descriptor(
    DescriptorType.DEVICE,
    ("bcdUSB", "bcd_usb", "H"),
    ("bDeviceClass", "b_device_class", "B"),
    ("bDeviceSubClass", "b_device_sub_class", "B"),
    ("bDeviceProtocol", "b_device_protocol", "B"),
    ("bMaxPacketSize0", "b_max_packet_size0", "B"),
    ("idVendor", "id_vendor", "H"),
    ("idProduct", "id_product", "H"),
    ("bcdDevice", "bcd_device", "H"),
    ("iManufacturer", "i_manufacturer", "B"),
    ("iProduct", "i_product", "B"),
    ("iSerialNumber", "i_serial_number", "B"),
    ("bNumConfigurations", "b_num_configurations", "B"),
)

# USB 2.0 §9.6.2, Table 9-9.
DEVICE_QUALIFIER = Layout.descriptor(
    DescriptorType.DEVICE_QUALIFIER,
    ("bcdUSB", "bcd_usb", "H"),
    ("bDeviceClass", "b_device_class", "B"),
    ("bDeviceSubClass", "b_device_sub_class", "B"),
    ("bDeviceProtocol", "b_device_protocol", "B"),
    ("bMaxPacketSize0", "b_max_packet_size0", "B"),
    ("bNumConfigurations", "b_num_configurations", "B"),
    ("bReserved", "b_reserved", "B"),
)

# USB 2.0 §9.6.3, Table 9-10: the 9-byte header of a configuration.
CONFIGURATION = Layout.descriptor(
    DescriptorType.CONFIGURATION,
    ("wTotalLength", None, "H"),
    ("bNumInterfaces", None, "B"),
    ("bConfigurationValue", "b_configuration_value", "B"),
    ("iConfiguration", "i_configuration", "B"),
    ("bmAttributes", "bm_attributes", "B"),
    ("bMaxPower", "b_max_power", "B"),
)

# USB 2.0 §9.6.5, Table 9-12.
INTERFACE = Layout.descriptor(
    DescriptorType.INTERFACE,
    ("bInterfaceNumber", "b_interface_number", "B"),
    ("bAlternateSetting", "b_alternate_setting", "B"),
    ("bNumEndpoints", None, "B"),
    ("bInterfaceClass", "b_interface_class", "B"),
    ("bInterfaceSubClass", "b_interface_sub_class", "B"),
    ("bInterfaceProtocol", "b_interface_protocol", "B"),
    ("iInterface", "i_interface", "B"),
)

_ENDPOINT_ROWS = (
    ("bEndpointAddress", "b_endpoint_address", "B"),
    ("bmAttributes", "bm_attributes", "B"),
    ("wMaxPacketSize", "w_max_packet_size", "H"),
    ("bInterval", "b_interval", "B"),
)

# USB 2.0 §9.6.6, Table 9-13: the standard 7-byte form.
ENDPOINT = Layout.descriptor(DescriptorType.ENDPOINT, *_ENDPOINT_ROWS)

# UAC 1.0 §4.6.1.1: the 9-byte form of audio endpoints.
AUDIO_ENDPOINT = Layout.descriptor(
    DescriptorType.ENDPOINT,
    *_ENDPOINT_ROWS,
    ("bRefresh", "b_refresh", "B"),
    ("bSynchAddress", "b_synch_address", "B"),
)

# USB 3.2 §9.6.4, Table 9-18 (first defined by the USB 2.0 IAD ECN).
INTERFACE_ASSOCIATION = Layout.descriptor(
    DescriptorType.INTERFACE_ASSOCIATION,
    ("bFirstInterface", "b_first_interface", "B"),
    ("bInterfaceCount", "b_interface_count", "B"),
    ("bFunctionClass", "b_function_class", "B"),
    ("bFunctionSubClass", "b_function_sub_class", "B"),
    ("bFunctionProtocol", "b_function_protocol", "B"),
    ("iFunction", "i_function", "B"),
)

# HID 1.11 §6.2.1: the fixed part, before the bNumDescriptors (type, length) pairs.
HID = Layout.descriptor(
    DescriptorType.HID,
    ("bcdHID", "bcd_hid", "H"),
    ("bCountryCode", "b_country_code", "B"),
    ("bNumDescriptors", None, "B"),
)

# USB 3.2 §9.6.2, Table 9-12: the header before the device capabilities.
BOS = Layout.descriptor(
    DescriptorType.BOS,
    ("wTotalLength", None, "H"),
    ("bNumDeviceCaps", None, "B"),
)

# USB 3.2 §9.6.2.1, Table 9-13: the header of every device capability.
DEVICE_CAPABILITY = Layout.descriptor(
    DescriptorType.DEVICE_CAPABILITY,
    ("bDevCapabilityType", "b_dev_capability_type", "B"),
)

# USB 2.0 §9.6.7, Tables 9-15 and 9-16: the header before the UTF-16LE text or LANGIDs.
STRING = Layout.descriptor(DescriptorType.STRING)
