"""usbredir with no I/O: the protocol QEMU, SPICE clients and ``usbredirect`` move USB
devices with (docs/usb-redirection-protocol.md of the usbredir project, version 0.7).

Packets as frozen dataclasses, their wire format in both forms each capability selects,
and a connection for either role (the usb-host, which has the device, or the usb-guest,
which uses it): bytes in, packets out, every length checked. Nothing here reads a socket.
May import the standard library, ``usbip_gadget._errors`` and ``protocol`` (for the
``NEED_DATA``/``CLOSED`` sentinels) only.
"""

from usbip_gadget.usbredir._codec import Forms
from usbip_gadget.usbredir._connection import ALL_CAPS, Connection, Event
from usbip_gadget.usbredir._constants import (
    ENDPOINTS,
    MAX_BULK_LENGTH,
    MAX_PACKET_LENGTH,
    Cap,
    EndpointType,
    PacketType,
    Role,
    Speed,
    Status,
    endpoint_address,
    endpoint_index,
)
from usbip_gadget.usbredir._messages import (
    AllocBulkStreams,
    AltSettingStatus,
    BufferedBulkPacket,
    BulkPacket,
    BulkReceivingStatus,
    BulkStreamsStatus,
    CancelDataPacket,
    ConfigurationStatus,
    ControlPacket,
    DataPacket,
    DeviceConnect,
    DeviceDisconnect,
    DeviceDisconnectAck,
    EndpointEntry,
    EpInfo,
    FilterFilter,
    FilterReject,
    FreeBulkStreams,
    GetAltSetting,
    GetConfiguration,
    Hello,
    InterfaceEntry,
    InterfaceInfo,
    InterruptPacket,
    InterruptReceivingStatus,
    IsoPacket,
    IsoStreamStatus,
    Packet,
    Reset,
    SetAltSetting,
    SetConfiguration,
    StartBulkReceiving,
    StartInterruptReceiving,
    StartIsoStream,
    StopBulkReceiving,
    StopInterruptReceiving,
    StopIsoStream,
)

__all__ = [
    "ALL_CAPS", "ENDPOINTS", "MAX_BULK_LENGTH", "MAX_PACKET_LENGTH", "AllocBulkStreams",
    "AltSettingStatus", "BufferedBulkPacket", "BulkPacket", "BulkReceivingStatus",
    "BulkStreamsStatus", "CancelDataPacket", "Cap", "ConfigurationStatus", "Connection",
    "ControlPacket", "DataPacket", "DeviceConnect", "DeviceDisconnect", "DeviceDisconnectAck",
    "EndpointEntry", "EndpointType", "EpInfo", "Event", "FilterFilter", "FilterReject", "Forms",
    "FreeBulkStreams", "GetAltSetting", "GetConfiguration", "Hello", "InterfaceEntry",
    "InterfaceInfo", "InterruptPacket", "InterruptReceivingStatus", "IsoPacket",
    "IsoStreamStatus", "Packet", "PacketType", "Reset", "Role", "SetAltSetting",
    "SetConfiguration", "Speed", "StartBulkReceiving", "StartInterruptReceiving",
    "StartIsoStream", "Status", "StopBulkReceiving", "StopInterruptReceiving", "StopIsoStream",
    "endpoint_address", "endpoint_index",
]  # fmt: skip
