"""Numbers the USB specifications define: descriptor types, requests, classes, speeds."""

from __future__ import annotations

from enum import IntEnum


class DescriptorType(IntEnum):
    """bDescriptorType values.

    USB 2.0 §9.4, Table 9-5; USB 3.2 §9.4, Table 9-6 (BOS, capabilities, companions);
    HID 1.11 §7.1 (HID, report, physical); USB Class Definitions (CS_INTERFACE, CS_ENDPOINT).
    """

    DEVICE = 1
    CONFIGURATION = 2
    STRING = 3
    INTERFACE = 4
    ENDPOINT = 5
    DEVICE_QUALIFIER = 6
    OTHER_SPEED_CONFIGURATION = 7
    INTERFACE_POWER = 8
    OTG = 9
    DEBUG = 10
    INTERFACE_ASSOCIATION = 11
    BOS = 15
    DEVICE_CAPABILITY = 16
    HID = 0x21
    HID_REPORT = 0x22
    HID_PHYSICAL = 0x23
    CS_INTERFACE = 0x24
    CS_ENDPOINT = 0x25
    SS_ENDPOINT_COMPANION = 0x30
    SSP_ISOC_ENDPOINT_COMPANION = 0x31


class Request(IntEnum):
    """Standard bRequest codes: USB 2.0 §9.4, Table 9-4 (SET_SEL, SET_ISOCH_DELAY: USB 3.2)."""

    GET_STATUS = 0
    CLEAR_FEATURE = 1
    SET_FEATURE = 3
    SET_ADDRESS = 5
    GET_DESCRIPTOR = 6
    SET_DESCRIPTOR = 7
    GET_CONFIGURATION = 8
    SET_CONFIGURATION = 9
    GET_INTERFACE = 10
    SET_INTERFACE = 11
    SYNCH_FRAME = 12
    SET_SEL = 48
    SET_ISOCH_DELAY = 49


class FeatureSelector(IntEnum):
    """Standard feature selectors (wValue of CLEAR_FEATURE/SET_FEATURE): USB 2.0 §9.4, Table 9-6."""

    ENDPOINT_HALT = 0
    DEVICE_REMOTE_WAKEUP = 1
    TEST_MODE = 2


class RequestType:
    """bmRequestType bit fields: USB 2.0 §9.3.1, Table 9-2.

    Combine one of each group: ``RequestType.IN | RequestType.CLASS | RequestType.INTERFACE``.
    """

    DIRECTION_MASK = 0x80
    OUT = 0x00
    IN = 0x80

    TYPE_MASK = 0x60
    STANDARD = 0x00
    CLASS = 0x20
    VENDOR = 0x40
    RESERVED = 0x60

    RECIPIENT_MASK = 0x1F
    DEVICE = 0x00
    INTERFACE = 0x01
    ENDPOINT = 0x02
    OTHER = 0x03


class ClassCode(IntEnum):
    """Base class codes: bDeviceClass, bInterfaceClass and bFunctionClass values.

    USB-IF, "Defined Class Codes" (https://www.usb.org/defined-class-codes). PER_INTERFACE
    is for bDeviceClass only: each interface names its own class.
    """

    PER_INTERFACE = 0x00
    AUDIO = 0x01
    CDC = 0x02
    HID = 0x03
    PHYSICAL = 0x05
    IMAGE = 0x06
    PRINTER = 0x07
    MASS_STORAGE = 0x08
    HUB = 0x09
    CDC_DATA = 0x0A
    SMART_CARD = 0x0B
    CONTENT_SECURITY = 0x0D
    VIDEO = 0x0E
    PERSONAL_HEALTHCARE = 0x0F
    AUDIO_VIDEO = 0x10
    BILLBOARD = 0x11
    TYPE_C_BRIDGE = 0x12
    BULK_DISPLAY = 0x13
    MCTP = 0x14
    I3C = 0x3C
    DIAGNOSTIC = 0xDC
    WIRELESS = 0xE0
    MISC = 0xEF
    APPLICATION = 0xFE
    VENDOR = 0xFF


class TransferType(IntEnum):
    """Endpoint bmAttributes bits 1..0: USB 2.0 §9.6.6, Table 9-13."""

    CONTROL = 0
    ISOCHRONOUS = 1
    BULK = 2
    INTERRUPT = 3


_LABELS = {
    0: ("unknown", ""),
    1: ("low", "1.5M"),
    2: ("full", "12M"),
    3: ("high", "480M"),
    4: ("wireless", "480M"),
    5: ("super", "5000M"),
    6: ("super+", "10000M"),
}


class Speed(IntEnum):
    """Device speed as Linux ``enum usb_device_speed`` (include/uapi/linux/usb/ch9.h).

    These are the values the USB/IP wire carries in ``speed``.
    """

    UNKNOWN = 0
    LOW = 1
    FULL = 2
    HIGH = 3
    WIRELESS = 4
    SUPER = 5
    SUPER_PLUS = 6

    @property
    def label(self) -> str:
        """Short name: "low", "full", "high", "super", "super+", "wireless" or "unknown"."""
        return _LABELS[self.value][0]

    @property
    def rate(self) -> str:
        """Signalling rate as ``lsusb -t`` prints it ("480M"); empty when unknown."""
        return _LABELS[self.value][1]

    @classmethod
    def from_label(cls, label: str) -> Speed:
        """The speed whose ``label`` is ``label``; ``ValueError`` if there is none."""
        for speed in cls:
            if speed.label == label:
                return speed
        raise ValueError(f"unknown speed label {label!r}")
