"""Every USB/IP message as a frozen dataclass.

Field names follow the spec; values are plain Python ints and bytes. Building and
parsing live in ``_codec``; the rules about who may send what live in ``_state``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from usbip_gadget.protocol._constants import NO_ISO, Direction, OpStatus


@dataclass(frozen=True, slots=True)
class InterfaceInfo:
    """One struct usbip_usb_interface of OP_REP_DEVLIST."""

    b_interface_class: int
    b_interface_sub_class: int
    b_interface_protocol: int


@dataclass(frozen=True, slots=True)
class UsbDevice:
    """struct usbip_usb_device: the 312-byte device record.

    Carried by OP_REP_DEVLIST, OP_REP_IMPORT, OP_REQ_EXPORT and OP_REQ_UNEXPORT.
    ``speed`` is the Linux ``enum usb_device_speed``.
    """

    path: str
    busid: str
    busnum: int
    devnum: int
    speed: int
    id_vendor: int
    id_product: int
    bcd_device: int
    b_device_class: int
    b_device_sub_class: int
    b_device_protocol: int
    b_configuration_value: int
    b_num_configurations: int
    b_num_interfaces: int

    @property
    def devid(self) -> int:
        """The devid a client puts in its commands: ``(busnum << 16) | devnum``."""
        return ((self.busnum & 0xFFFF) << 16) | (self.devnum & 0xFFFF)


@dataclass(frozen=True, slots=True)
class ExportedDevice:
    """One entry of OP_REP_DEVLIST: the device record and its interfaces."""

    device: UsbDevice
    interfaces: tuple[InterfaceInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class DevlistRequest:
    """OP_REQ_DEVLIST."""


@dataclass(frozen=True, slots=True)
class DevlistReply:
    """OP_REP_DEVLIST. With a non-zero status the message ends after the header."""

    devices: tuple[ExportedDevice, ...] = ()
    status: int = OpStatus.OK


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """OP_REQ_IMPORT."""

    busid: str


@dataclass(frozen=True, slots=True)
class ImportReply:
    """OP_REP_IMPORT: ``device`` is present exactly when ``status`` is 0."""

    status: int
    device: UsbDevice | None = None


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """OP_REQ_EXPORT: the device side offers a device ("connect")."""

    device: UsbDevice


@dataclass(frozen=True, slots=True)
class ExportReply:
    """OP_REP_EXPORT: op_common status plus a 4-byte return code."""

    status: int = OpStatus.OK
    returncode: int = 0


@dataclass(frozen=True, slots=True)
class UnexportRequest:
    """OP_REQ_UNEXPORT: the device side withdraws a device ("disconnect")."""

    device: UsbDevice


@dataclass(frozen=True, slots=True)
class UnexportReply:
    """OP_REP_UNEXPORT: op_common status plus a 4-byte return code."""

    status: int = OpStatus.OK
    returncode: int = 0


@dataclass(frozen=True, slots=True)
class IsoPacket:
    """struct usbip_iso_packet_descriptor."""

    offset: int
    length: int
    actual_length: int = 0
    status: int = 0


@dataclass(frozen=True, slots=True)
class CmdSubmit:
    """USBIP_CMD_SUBMIT.

    ``data`` is the OUT payload (empty for IN). ``number_of_packets`` is
    ``NO_ISO`` (-1 on the wire as 0xffffffff) unless the URB is isochronous.
    """

    seqnum: int
    devid: int
    direction: Direction
    ep: int
    transfer_buffer_length: int
    transfer_flags: int = 0
    setup: bytes = bytes(8)
    data: bytes = b""
    start_frame: int = 0
    number_of_packets: int = NO_ISO
    interval: int = 0
    iso_packets: tuple[IsoPacket, ...] = field(default=())

    @property
    def is_iso(self) -> bool:
        return is_iso_count(self.number_of_packets)


@dataclass(frozen=True, slots=True)
class RetSubmit:
    """USBIP_RET_SUBMIT. ``data`` is the IN payload (``actual_length`` bytes, empty for OUT)."""

    seqnum: int
    status: int = 0
    actual_length: int = 0
    data: bytes = b""
    start_frame: int = 0
    number_of_packets: int = NO_ISO
    error_count: int = 0
    iso_packets: tuple[IsoPacket, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class CmdUnlink:
    """USBIP_CMD_UNLINK."""

    seqnum: int
    devid: int
    unlink_seqnum: int
    direction: Direction = Direction.OUT


@dataclass(frozen=True, slots=True)
class RetUnlink:
    """USBIP_RET_UNLINK: -ECONNRESET if the URB was unlinked, 0 if it had completed."""

    seqnum: int
    status: int = 0


OpMessage = (
    DevlistRequest
    | DevlistReply
    | ImportRequest
    | ImportReply
    | ExportRequest
    | ExportReply
    | UnexportRequest
    | UnexportReply
)
UrbMessage = CmdSubmit | RetSubmit | CmdUnlink | RetUnlink
Message = OpMessage | UrbMessage


def is_iso_count(number_of_packets: int) -> bool:
    """Whether a number_of_packets field denotes an isochronous URB.

    The spec says 0xffffffff for non-ISO; Linux's vhci-hcd sends 0. Both mean "none".
    """
    return number_of_packets not in (NO_ISO, 0)
