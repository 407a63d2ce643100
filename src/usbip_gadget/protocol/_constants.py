"""Numbers of the USB/IP wire protocol (Documentation/usb/usbip_protocol.rst, version 1.1.1)."""

from __future__ import annotations

from enum import IntEnum, IntFlag

#: "The binary representation of this version in message headers is 0x0111."
USBIP_VERSION = 0x0111

#: Well-known TCP port of usbipd.
DEFAULT_PORT = 3240

#: Size of every URB-phase header (usbip_header): 20-byte basic header + 28 bytes.
URB_HEADER_SIZE = 48

#: Size of one usbip_iso_packet_descriptor.
ISO_DESCRIPTOR_SIZE = 16

#: Size of the device record (struct usbip_usb_device) in OP_REP_DEVLIST/IMPORT/EXPORT.
DEVICE_RECORD_SIZE = 312

#: Size of one interface record (struct usbip_usb_interface) in OP_REP_DEVLIST.
INTERFACE_RECORD_SIZE = 4

#: Size of the op_common header: version, code, status.
OP_HEADER_SIZE = 8

#: drivers/usb/usbip/usbip_common.h: USBIP_MAX_ISO_PACKETS.
MAX_ISO_PACKETS = 1024

#: Largest transfer we accept or build by default (a bound against hostile lengths).
DEFAULT_MAX_TRANSFER = 16 * 1024 * 1024

#: Largest device count we accept in OP_REP_DEVLIST (a bound against hostile counts).
MAX_DEVLIST_DEVICES = 1024

#: number_of_packets of a non-isochronous URB ("0xffffffff if not ISO transfer").
NO_ISO = -1


class OpCode(IntEnum):
    """Operation codes of the op_common header ("Message Format")."""

    REQ_DEVLIST = 0x8005
    REP_DEVLIST = 0x0005
    REQ_IMPORT = 0x8003
    REP_IMPORT = 0x0003
    #: The export ("connect") series: tools/usb/usbip/src/usbip_network.h, OP_EXPORT = 0x06.
    REQ_EXPORT = 0x8006
    REP_EXPORT = 0x0006
    REQ_UNEXPORT = 0x8007
    REP_UNEXPORT = 0x0007


class Command(IntEnum):
    """usbip_header_basic.command ("Message Format", URB phase)."""

    CMD_SUBMIT = 0x00000001
    CMD_UNLINK = 0x00000002
    RET_SUBMIT = 0x00000003
    RET_UNLINK = 0x00000004


class Direction(IntEnum):
    """usbip_header_basic.direction."""

    OUT = 0
    IN = 1


class TransferFlags(IntFlag):
    """URB transfer_flags (include/linux/usb.h) as carried in CMD_SUBMIT."""

    NONE = 0
    SHORT_NOT_OK = 0x0001
    ISO_ASAP = 0x0002
    NO_TRANSFER_DMA_MAP = 0x0004
    ZERO_PACKET = 0x0040
    NO_INTERRUPT = 0x0080
    FREE_BUFFER = 0x0100
    DIR_IN = 0x0200


class OpStatus(IntEnum):
    """op_common.status values sent by usbipd (tools/usb/usbip/src/usbip_common.h)."""

    OK = 0
    NA = 1
    DEV_BUSY = 2
    DEV_ERR = 3
    NODEV = 4
    ERROR = 5

    @classmethod
    def describe(cls, value: int) -> str:
        """A human sentence for a status value, known or not."""
        return _STATUS_TEXT.get(value, f"request failed with status {value}")


_STATUS_TEXT: dict[int, str] = {
    OpStatus.OK: "ok",
    OpStatus.NA: "device not available (not exported?)",
    OpStatus.DEV_BUSY: "device busy (already imported by another client)",
    OpStatus.DEV_ERR: "device in error state",
    OpStatus.NODEV: "no such device",
    OpStatus.ERROR: "unexpected error on the server",
}
