"""usbredir's numbers: packet types, capabilities, status, speed and endpoint type codes,
and the limits a peer enforces (usbredir 0.13: usbredirproto.h and usbredirparser.c; the
protocol document docs/usb-redirection-protocol.md, version 0.7)."""

from __future__ import annotations

from enum import IntEnum

#: Main header: type (u32), length (u32), id (u32, or u64 once both sides have 64-bit ids).
HEADER_SIZE = 12
HEADER_SIZE_64 = 16
#: hello: a 64-byte version text, then capability words.
VERSION_SIZE = 64
#: Capability words a hello carries (every known capability fits in the first).
CAP_WORDS = 1
#: The most capability words accepted in a peer's hello.
MAX_CAP_WORDS = 64
#: usbredirparser's limits: a bulk length (and bytes_per_transfer), and a packet's length.
MAX_BULK_LENGTH = 128 * 1024 * 1024
MAX_PACKET_LENGTH = 1024 + MAX_BULK_LENGTH
#: interface_info and ep_info describe up to 32 of each.
MAX_INTERFACES = 32
ENDPOINTS = 32


class PacketType(IntEnum):
    """usb_redir_header.type: control packets from 0, data packets from 100."""

    HELLO = 0
    DEVICE_CONNECT = 1
    DEVICE_DISCONNECT = 2
    RESET = 3
    INTERFACE_INFO = 4
    EP_INFO = 5
    SET_CONFIGURATION = 6
    GET_CONFIGURATION = 7
    CONFIGURATION_STATUS = 8
    SET_ALT_SETTING = 9
    GET_ALT_SETTING = 10
    ALT_SETTING_STATUS = 11
    START_ISO_STREAM = 12
    STOP_ISO_STREAM = 13
    ISO_STREAM_STATUS = 14
    START_INTERRUPT_RECEIVING = 15
    STOP_INTERRUPT_RECEIVING = 16
    INTERRUPT_RECEIVING_STATUS = 17
    ALLOC_BULK_STREAMS = 18
    FREE_BULK_STREAMS = 19
    BULK_STREAMS_STATUS = 20
    CANCEL_DATA_PACKET = 21
    FILTER_REJECT = 22
    FILTER_FILTER = 23
    DEVICE_DISCONNECT_ACK = 24
    START_BULK_RECEIVING = 25
    STOP_BULK_RECEIVING = 26
    BULK_RECEIVING_STATUS = 27
    CONTROL_PACKET = 100
    BULK_PACKET = 101
    ISO_PACKET = 102
    INTERRUPT_PACKET = 103
    BUFFERED_BULK_PACKET = 104


class Cap(IntEnum):
    """Capability bits of hello (bit n: bit n % 32 of word n // 32)."""

    BULK_STREAMS = 0
    CONNECT_DEVICE_VERSION = 1
    FILTER = 2
    DEVICE_DISCONNECT_ACK = 3
    EP_INFO_MAX_PACKET_SIZE = 4
    IDS_64BIT = 5
    BULK_LENGTH_32BIT = 6
    BULK_RECEIVING = 7


class Status(IntEnum):
    """usb_redir_status: the outcome a reply or stream status carries."""

    SUCCESS = 0
    CANCELLED = 1
    INVAL = 2
    IOERROR = 3
    STALL = 4
    TIMEOUT = 5
    BABBLE = 6


class Speed(IntEnum):
    """device_connect.speed."""

    LOW = 0
    FULL = 1
    HIGH = 2
    SUPER = 3
    UNKNOWN = 255


class EndpointType(IntEnum):
    """ep_info.type: the transfer types of bmAttributes, and 255 for an unused endpoint."""

    CONTROL = 0
    ISO = 1
    BULK = 2
    INTERRUPT = 3
    INVALID = 255


class Role(IntEnum):
    """Which side of the connection: the usb-host has the device, the usb-guest uses it."""

    HOST = 0
    GUEST = 1


def endpoint_index(address: int) -> int:
    """The ep_info slot of an endpoint address: OUT 0x00-0x0f, then IN 0x80-0x8f."""
    return (address & 0x0F) | (0x10 if address & 0x80 else 0)


def endpoint_address(index: int) -> int:
    """The endpoint address of an ep_info slot (0-31)."""
    return (index & 0x0F) | (0x80 if index & 0x10 else 0)


#: What this project's links announce in either role: every capability but bulk streams,
#: filters and buffered bulk receiving, which they do not carry.
LINK_CAPS = frozenset({
    Cap.CONNECT_DEVICE_VERSION, Cap.DEVICE_DISCONNECT_ACK, Cap.EP_INFO_MAX_PACKET_SIZE,
    Cap.IDS_64BIT, Cap.BULK_LENGTH_32BIT,
})  # fmt: skip
