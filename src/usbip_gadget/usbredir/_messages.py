"""usbredir packets as frozen dataclasses, one per packet type (docs/usb-redirection-protocol.md).

Every packet has the main header's ``id``: a request's, echoed in its reply, or a counter
for packets the usb-host sends unasked (interrupt, iso, buffered bulk). Integers are the
fields' wire widths; the codec checks them. Data packets carry ``length``, the transfer's
length, and ``data``, present only in the direction data flows (OUT to the usb-host, IN to
the usb-guest), where it must be ``length`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from usbip_gadget.usbredir._constants import (
    ENDPOINTS,
    EndpointType,
    PacketType,
    endpoint_address,
)


@dataclass(frozen=True, slots=True)
class Hello:
    """Both sides' first packet: a version text (for logs) and capability bit numbers."""

    TYPE: ClassVar[PacketType] = PacketType.HELLO
    version: str
    caps: frozenset[int]
    id: int = 0


@dataclass(frozen=True, slots=True)
class DeviceConnect:
    """The usb-host's device is there (after interface_info and ep_info).
    ``device_version_bcd`` is None in the short form (no connect_device_version on both
    sides); a value given is then not sent."""

    TYPE: ClassVar[PacketType] = PacketType.DEVICE_CONNECT
    speed: int
    device_class: int
    device_subclass: int
    device_protocol: int
    vendor_id: int
    product_id: int
    device_version_bcd: int | None = None
    id: int = 0


@dataclass(frozen=True, slots=True)
class InterfaceEntry:
    """One interface of interface_info, in its current alternate setting."""

    number: int
    interface_class: int
    interface_subclass: int
    interface_protocol: int


@dataclass(frozen=True, slots=True)
class InterfaceInfo:
    """The active configuration's interfaces (up to 32)."""

    TYPE: ClassVar[PacketType] = PacketType.INTERFACE_INFO
    interfaces: tuple[InterfaceEntry, ...]
    id: int = 0


@dataclass(frozen=True, slots=True)
class EndpointEntry:
    """One ep_info slot. ``max_packet_size`` (bytes, with the high-bandwidth multiplier)
    and ``max_streams`` are 0 where the negotiated form has no room for them."""

    type: int = EndpointType.INVALID
    interval: int = 0
    interface: int = 0
    max_packet_size: int = 0
    max_streams: int = 0


@dataclass(frozen=True, slots=True)
class EpInfo:
    """All 32 endpoint slots: index 0-15 are OUT 0x00-0x0f, 16-31 are IN 0x80-0x8f."""

    TYPE: ClassVar[PacketType] = PacketType.EP_INFO
    endpoints: tuple[EndpointEntry, ...]
    id: int = 0

    def __post_init__(self) -> None:
        if len(self.endpoints) != ENDPOINTS:
            raise ValueError(f"ep_info has {ENDPOINTS} slots, not {len(self.endpoints)}")

    def by_address(self) -> dict[int, EndpointEntry]:
        """The used endpoints by address."""
        return {
            endpoint_address(i): e
            for i, e in enumerate(self.endpoints)
            if e.type != EndpointType.INVALID
        }


@dataclass(frozen=True, slots=True)
class DeviceDisconnect:
    TYPE: ClassVar[PacketType] = PacketType.DEVICE_DISCONNECT
    id: int = 0


@dataclass(frozen=True, slots=True)
class Reset:
    TYPE: ClassVar[PacketType] = PacketType.RESET
    id: int = 0


@dataclass(frozen=True, slots=True)
class SetConfiguration:
    TYPE: ClassVar[PacketType] = PacketType.SET_CONFIGURATION
    configuration: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class GetConfiguration:
    TYPE: ClassVar[PacketType] = PacketType.GET_CONFIGURATION
    id: int = 0


@dataclass(frozen=True, slots=True)
class ConfigurationStatus:
    TYPE: ClassVar[PacketType] = PacketType.CONFIGURATION_STATUS
    status: int
    configuration: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class SetAltSetting:
    TYPE: ClassVar[PacketType] = PacketType.SET_ALT_SETTING
    interface: int
    alt: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class GetAltSetting:
    TYPE: ClassVar[PacketType] = PacketType.GET_ALT_SETTING
    interface: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class AltSettingStatus:
    TYPE: ClassVar[PacketType] = PacketType.ALT_SETTING_STATUS
    status: int
    interface: int
    alt: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class StartIsoStream:
    TYPE: ClassVar[PacketType] = PacketType.START_ISO_STREAM
    endpoint: int
    pkts_per_urb: int
    no_urbs: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class StopIsoStream:
    TYPE: ClassVar[PacketType] = PacketType.STOP_ISO_STREAM
    endpoint: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class IsoStreamStatus:
    TYPE: ClassVar[PacketType] = PacketType.ISO_STREAM_STATUS
    status: int
    endpoint: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class StartInterruptReceiving:
    """Interrupt IN is only ever received this way: the usb-host polls and sends each
    report unasked (an interrupt_packet request for an IN endpoint is a protocol error)."""

    TYPE: ClassVar[PacketType] = PacketType.START_INTERRUPT_RECEIVING
    endpoint: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class StopInterruptReceiving:
    TYPE: ClassVar[PacketType] = PacketType.STOP_INTERRUPT_RECEIVING
    endpoint: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class InterruptReceivingStatus:
    TYPE: ClassVar[PacketType] = PacketType.INTERRUPT_RECEIVING_STATUS
    status: int
    endpoint: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class AllocBulkStreams:
    """``endpoints``: a bit mask of ep_info slots."""

    TYPE: ClassVar[PacketType] = PacketType.ALLOC_BULK_STREAMS
    endpoints: int
    no_streams: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class FreeBulkStreams:
    TYPE: ClassVar[PacketType] = PacketType.FREE_BULK_STREAMS
    endpoints: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class BulkStreamsStatus:
    TYPE: ClassVar[PacketType] = PacketType.BULK_STREAMS_STATUS
    endpoints: int
    no_streams: int
    status: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class CancelDataPacket:
    """Cancel the data packet whose id is ``id``."""

    TYPE: ClassVar[PacketType] = PacketType.CANCEL_DATA_PACKET
    id: int = 0


@dataclass(frozen=True, slots=True)
class FilterReject:
    """The usb-guest's filter refuses the device the usb-host announced."""

    TYPE: ClassVar[PacketType] = PacketType.FILTER_REJECT
    id: int = 0


@dataclass(frozen=True, slots=True)
class FilterFilter:
    """Filter rules, ``class,vendor,product,bcd,allow`` joined by ``|`` (sent with a NUL)."""

    TYPE: ClassVar[PacketType] = PacketType.FILTER_FILTER
    rules: str
    id: int = 0


@dataclass(frozen=True, slots=True)
class DeviceDisconnectAck:
    TYPE: ClassVar[PacketType] = PacketType.DEVICE_DISCONNECT_ACK
    id: int = 0


@dataclass(frozen=True, slots=True)
class StartBulkReceiving:
    TYPE: ClassVar[PacketType] = PacketType.START_BULK_RECEIVING
    stream_id: int
    bytes_per_transfer: int
    endpoint: int
    no_transfers: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class StopBulkReceiving:
    TYPE: ClassVar[PacketType] = PacketType.STOP_BULK_RECEIVING
    stream_id: int
    endpoint: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class BulkReceivingStatus:
    TYPE: ClassVar[PacketType] = PacketType.BULK_RECEIVING_STATUS
    stream_id: int
    endpoint: int
    status: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class ControlPacket:
    """A control transfer: the request (``length`` is wLength; data for OUT) and its reply
    (``length`` is what moved; data for IN). ``endpoint`` is 0x00 or 0x80: the direction."""

    TYPE: ClassVar[PacketType] = PacketType.CONTROL_PACKET
    endpoint: int
    request: int
    requesttype: int
    status: int
    value: int
    index: int
    length: int
    data: bytes = b""
    id: int = 0


@dataclass(frozen=True, slots=True)
class BulkPacket:
    """A bulk transfer (``length`` up to 65535, or 32 bits with 32bits_bulk_length)."""

    TYPE: ClassVar[PacketType] = PacketType.BULK_PACKET
    endpoint: int
    status: int
    length: int
    stream_id: int = 0
    data: bytes = b""
    id: int = 0


@dataclass(frozen=True, slots=True)
class IsoPacket:
    TYPE: ClassVar[PacketType] = PacketType.ISO_PACKET
    endpoint: int
    status: int
    length: int
    data: bytes = b""
    id: int = 0


@dataclass(frozen=True, slots=True)
class InterruptPacket:
    TYPE: ClassVar[PacketType] = PacketType.INTERRUPT_PACKET
    endpoint: int
    status: int
    length: int
    data: bytes = b""
    id: int = 0


@dataclass(frozen=True, slots=True)
class BufferedBulkPacket:
    """Bulk IN data the usb-host sends unasked while bulk receiving runs."""

    TYPE: ClassVar[PacketType] = PacketType.BUFFERED_BULK_PACKET
    stream_id: int
    length: int
    endpoint: int
    status: int
    data: bytes = b""
    id: int = 0


Packet = (
    Hello | DeviceConnect | DeviceDisconnect | Reset | InterfaceInfo | EpInfo | SetConfiguration
    | GetConfiguration | ConfigurationStatus | SetAltSetting | GetAltSetting | AltSettingStatus
    | StartIsoStream | StopIsoStream | IsoStreamStatus | StartInterruptReceiving
    | StopInterruptReceiving | InterruptReceivingStatus | AllocBulkStreams | FreeBulkStreams
    | BulkStreamsStatus | CancelDataPacket | FilterReject | FilterFilter | DeviceDisconnectAck
    | StartBulkReceiving | StopBulkReceiving | BulkReceivingStatus | ControlPacket | BulkPacket
    | IsoPacket | InterruptPacket | BufferedBulkPacket
)  # fmt: skip
DataPacket = ControlPacket | BulkPacket | IsoPacket | InterruptPacket | BufferedBulkPacket
