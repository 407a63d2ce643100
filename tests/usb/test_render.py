"""The lsusb-like text tree."""

from __future__ import annotations

from tests.usb.test_snapshot import keyboard, mass_storage
from tests.usb.vectors import CDC_ACM_CONFIG, MASS_STORAGE_DEVICE, MICROPHONE_CONFIG
from usbip_gadget.usb import (
    DeviceSnapshot,
    EndpointDescriptor,
    Speed,
    describe_endpoint,
    render_tree,
)


def test_mass_storage_tree() -> None:
    lines = render_tree(mass_storage()).splitlines()
    expected = [
        "Device Descriptor:",
        "  bLength                18",
        "  bcdUSB               2.00",
        "  idVendor           0x0781",
        "  idProduct          0x5567",
        "  iManufacturer           1 SanDisk",
        "  iProduct                2 Cruzer Blade",
        "  iSerial                 3 4C530001230308117054",
        "  bNumConfigurations      1",
        "  Configuration Descriptor:",
        "    wTotalLength       0x0020",
        "    bNumInterfaces          1",
        "    iConfiguration          0",
        "    bmAttributes         0x80",
        "      (Bus Powered)",
        "    MaxPower              100mA",
        "    Interface Descriptor:",
        "      bInterfaceClass         8 Mass Storage",
        "      bInterfaceSubClass      6",
        "      bInterfaceProtocol     80",
        "      Endpoint Descriptor:",
        "        bEndpointAddress     0x81 EP 1 IN Bulk 512 bytes",
        "          Transfer Type            Bulk",
        "        wMaxPacketSize     0x0200 1x 512 bytes",
        "Binary Object Store Descriptor:",
        "  bNumDeviceCaps          1",
        "  Device Capability 0x02 (USB_2_0_EXTENSION):",
        "Device Qualifier (for other device speed):",
    ]
    for line in expected:
        assert line in lines
    assert lines.index("      Endpoint Descriptor:") > lines.index("    Interface Descriptor:")


def test_keyboard_tree_shows_hid() -> None:
    text = render_tree(keyboard())
    assert "      HID Device Descriptor:" in text
    assert "        wDescriptorLength      63" in text
    assert "        Report Descriptor: (length is 63)" in text
    assert "      (Remote Wakeup)" in text


def test_class_specific_and_audio_endpoints() -> None:
    snapshot = DeviceSnapshot.from_raw(
        "1-1", Speed.FULL, MASS_STORAGE_DEVICE, (CDC_ACM_CONFIG, MICROPHONE_CONFIG)
    )
    text = render_tree(snapshot)
    assert "    Interface Association:" in text
    assert "      Descriptor 0x24 (CS_INTERFACE):" in text
    assert "        05 24 06 00 01" in text
    assert "        bRefresh                0" in text
    assert "        Descriptor 0x25 (CS_ENDPOINT):" in text
    assert "          Synch Type               None" in text


def test_describe_endpoint() -> None:
    assert describe_endpoint(EndpointDescriptor(0x03, 0x03, 64, 1)) == "EP 3 OUT Interrupt 64 bytes"
