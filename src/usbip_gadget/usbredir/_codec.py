"""usbredir's wire format: each packet's type-specific header and data, both ways.

The forms depend on what both sides announced (``Forms``), and the rules on who sends:
every length, count, endpoint direction and data size is checked before anything is built
from it, the same checks usbredirparser makes (and a few stricter ones that real peers
meet). A broken rule in received bytes is a ``RemoteProtocolError``; in a packet we were
asked to send, a ``LocalProtocolError``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import astuple, fields
from typing import Any

from usbip_gadget._errors import LocalProtocolError, RemoteProtocolError
from usbip_gadget.usbredir._constants import (
    CAP_WORDS,
    ENDPOINTS,
    MAX_CAP_WORDS,
    MAX_INTERFACES,
    VERSION_SIZE,
    Cap,
    PacketType,
    Role,
)
from usbip_gadget.usbredir._forms import BOTH_SEND, Forms
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
from usbip_gadget.usbredir._rules import check_packet

#: Before the peer's hello: no capability is taken as shared.
HELLO_FORMS = Forms(frozenset(), frozenset())

# Fixed layouts: (struct, the dataclass fields in wire order, without id).
_FIXED: dict[type[Any], tuple[struct.Struct, tuple[str, ...]]] = {
    SetConfiguration: (struct.Struct("<B"), ("configuration",)),
    ConfigurationStatus: (struct.Struct("<BB"), ("status", "configuration")),
    SetAltSetting: (struct.Struct("<BB"), ("interface", "alt")),
    GetAltSetting: (struct.Struct("<B"), ("interface",)),
    AltSettingStatus: (struct.Struct("<BBB"), ("status", "interface", "alt")),
    StartIsoStream: (struct.Struct("<BBB"), ("endpoint", "pkts_per_urb", "no_urbs")),
    StopIsoStream: (struct.Struct("<B"), ("endpoint",)),
    IsoStreamStatus: (struct.Struct("<BB"), ("status", "endpoint")),
    StartInterruptReceiving: (struct.Struct("<B"), ("endpoint",)),
    StopInterruptReceiving: (struct.Struct("<B"), ("endpoint",)),
    InterruptReceivingStatus: (struct.Struct("<BB"), ("status", "endpoint")),
    AllocBulkStreams: (struct.Struct("<II"), ("endpoints", "no_streams")),
    FreeBulkStreams: (struct.Struct("<I"), ("endpoints",)),
    BulkStreamsStatus: (struct.Struct("<IIB"), ("endpoints", "no_streams", "status")),
    StartBulkReceiving: (
        struct.Struct("<IIBB"),
        ("stream_id", "bytes_per_transfer", "endpoint", "no_transfers"),
    ),
    StopBulkReceiving: (struct.Struct("<IB"), ("stream_id", "endpoint")),
    BulkReceivingStatus: (struct.Struct("<IBB"), ("stream_id", "endpoint", "status")),
    ControlPacket: (
        struct.Struct("<BBBBHHH"),
        ("endpoint", "request", "requesttype", "status", "value", "index", "length"),
    ),
    IsoPacket: (struct.Struct("<BBH"), ("endpoint", "status", "length")),
    InterruptPacket: (struct.Struct("<BBH"), ("endpoint", "status", "length")),
    BufferedBulkPacket: (struct.Struct("<IIBB"), ("stream_id", "length", "endpoint", "status")),
}
_EMPTY: tuple[type[Any], ...] = (
    DeviceDisconnect, Reset, GetConfiguration, CancelDataPacket, FilterReject, DeviceDisconnectAck,
)  # fmt: skip
_OTHERS: tuple[type[Any], ...] = (
    Hello, DeviceConnect, InterfaceInfo, EpInfo, FilterFilter, BulkPacket,
)  # fmt: skip
_CLASSES: dict[PacketType, type[Any]] = {cls.TYPE: cls for cls in (*_FIXED, *_EMPTY, *_OTHERS)}
_WITH_DATA = BOTH_SEND | {PacketType.BUFFERED_BULK_PACKET}
_DEVICE_CONNECT = struct.Struct("<BBBBHH")
_BCD = struct.Struct("<H")
_INTERFACES = struct.Struct("<I32s32s32s32s")
_EP_BASE = struct.Struct("<32s32s32s")
_EP_MPS = struct.Struct("<32H")
_EP_STREAMS = struct.Struct("<32I")
_BULK = struct.Struct("<BBHI")


def packet_class(kind: int) -> type[Any] | None:
    try:
        return _CLASSES[PacketType(kind)]
    except ValueError:
        return None


def header_size(kind: PacketType, forms: Forms) -> int | None:
    """The type-specific header's size; None for hello (its size is its version text)."""
    cls = _CLASSES[kind]
    if cls in _FIXED:
        return _FIXED[cls][0].size
    if cls in _EMPTY or cls is FilterFilter:
        return 0
    if cls is DeviceConnect:
        return 10 if forms.both(Cap.CONNECT_DEVICE_VERSION) else 8
    if cls is InterfaceInfo:
        return _INTERFACES.size
    if cls is EpInfo:
        return forms.ep_info_size()
    if cls is BulkPacket:
        return 10 if forms.bulk_32bit else 8
    return VERSION_SIZE  # hello


def carries_data(kind: PacketType) -> bool:
    return kind in _WITH_DATA


# -- building ---------------------------------------------------------------------------------


def pack_body(packet: Packet, sender: Role, forms: Forms) -> bytes:
    """The type-specific header and data of ``packet`` sent by ``sender``; every rule checked
    (``LocalProtocolError``)."""
    try:
        check_packet(packet, sender, forms, own=False)
        return _pack(packet, forms)
    except (struct.error, ValueError, OverflowError) as exc:  # a field the wire cannot hold
        raise LocalProtocolError(f"{packet.TYPE.name.lower()}: {exc}") from None
    except RemoteProtocolError as exc:
        raise LocalProtocolError(str(exc)) from None


def _pack(packet: Packet, forms: Forms) -> bytes:
    cls = type(packet)
    if cls in _FIXED:
        layout, names = _FIXED[cls]
        body = layout.pack(*(getattr(packet, n) for n in names))
        return body + getattr(packet, "data", b"")
    if cls in _EMPTY:
        return b""
    return _PACKERS[cls](packet, forms)


def _pack_hello(packet: Hello, _forms: Forms) -> bytes:
    version = packet.version.encode("utf-8")[: VERSION_SIZE - 1].ljust(VERSION_SIZE, b"\0")
    words = [0] * max(CAP_WORDS, (max(packet.caps, default=0) // 32) + 1)
    for bit in packet.caps:
        words[bit // 32] |= 1 << (bit % 32)
    return version + struct.pack(f"<{len(words)}I", *words)


def _pack_connect(packet: DeviceConnect, forms: Forms) -> bytes:
    body = _DEVICE_CONNECT.pack(
        packet.speed, packet.device_class, packet.device_subclass, packet.device_protocol,
        packet.vendor_id, packet.product_id,
    )  # fmt: skip
    if forms.both(Cap.CONNECT_DEVICE_VERSION):
        body += _BCD.pack(packet.device_version_bcd or 0)
    return body


def _pack_interfaces(packet: InterfaceInfo, _forms: Forms) -> bytes:
    rows = list(zip(*(astuple(e) for e in packet.interfaces), strict=True)) or [(), (), (), ()]
    columns = [bytes(row).ljust(MAX_INTERFACES, b"\0") for row in rows]
    return _INTERFACES.pack(len(packet.interfaces), *columns)


def _pack_ep_info(packet: EpInfo, forms: Forms) -> bytes:
    entries = packet.endpoints
    body = _EP_BASE.pack(
        bytes(e.type for e in entries), bytes(e.interval for e in entries),
        bytes(e.interface for e in entries),
    )  # fmt: skip
    size = forms.ep_info_size()
    if size >= 160:
        body += _EP_MPS.pack(*(e.max_packet_size for e in entries))
    if size == 288:
        body += _EP_STREAMS.pack(*(e.max_streams for e in entries))
    return body


def _pack_filter(packet: FilterFilter, _forms: Forms) -> bytes:
    return packet.rules.encode("ascii") + b"\0"


def _pack_bulk(packet: BulkPacket, forms: Forms) -> bytes:
    body = _BULK.pack(packet.endpoint, packet.status, packet.length & 0xFFFF, packet.stream_id)
    if forms.bulk_32bit:
        body += _BCD.pack(packet.length >> 16)
    return body + packet.data


_PACKERS: dict[type[Any], Callable[[Any, Forms], bytes]] = {
    Hello: _pack_hello,
    DeviceConnect: _pack_connect,
    InterfaceInfo: _pack_interfaces,
    EpInfo: _pack_ep_info,
    FilterFilter: _pack_filter,
    BulkPacket: _pack_bulk,
}


# -- parsing ----------------------------------------------------------------------------------


def parse_body(
    kind: PacketType, packet_id: int, body: memoryview, sender: Role, forms: Forms
) -> Packet:
    """The packet of type ``kind`` whose type-specific header and data are ``body`` (its
    length already checked against the header size), sent by ``sender``."""
    cls = _CLASSES[kind]
    size = header_size(kind, forms)
    assert size is not None
    head, data = body[:size], bytes(body[size:])
    if cls in _FIXED:
        layout, names = _FIXED[cls]
        values = dict(zip(names, layout.unpack(head), strict=True))
        if "data" in {f.name for f in fields(cls)}:
            values["data"] = data
        packet: Packet = cls(**values, id=packet_id)
    elif cls in _EMPTY:
        packet = cls(id=packet_id)
    else:
        packet = _PARSERS[cls](head, data, packet_id, forms)
    check_packet(packet, sender, forms, own=True)
    return packet


def _parse_hello(head: memoryview, data: bytes, packet_id: int, _forms: Forms) -> Hello:
    if len(data) % 4 or len(data) // 4 > MAX_CAP_WORDS:
        raise RemoteProtocolError(f"hello: {len(data)} bytes of capabilities")
    words = struct.unpack(f"<{len(data) // 4}I", data)
    caps = frozenset(32 * w + b for w, word in enumerate(words) for b in range(32) if word >> b & 1)
    text = bytes(head).split(b"\0", 1)[0].decode("utf-8", "replace")
    return Hello(text, caps, id=packet_id)


def _parse_connect(head: memoryview, _data: bytes, packet_id: int, forms: Forms) -> DeviceConnect:
    speed, cls, sub, proto, vid, pid = _DEVICE_CONNECT.unpack(head[: _DEVICE_CONNECT.size])
    bcd = _BCD.unpack(head[8:10])[0] if forms.both(Cap.CONNECT_DEVICE_VERSION) else None
    return DeviceConnect(speed, cls, sub, proto, vid, pid, bcd, id=packet_id)


def _parse_interfaces(
    head: memoryview, _data: bytes, packet_id: int, _forms: Forms
) -> InterfaceInfo:
    count, numbers, classes, subclasses, protocols = _INTERFACES.unpack(head)
    if count > MAX_INTERFACES:
        raise RemoteProtocolError(f"interface_info: interface_count {count} over {MAX_INTERFACES}")
    rows = zip(numbers, classes, subclasses, protocols, strict=True)
    return InterfaceInfo(tuple(InterfaceEntry(*row) for row in list(rows)[:count]), id=packet_id)


def _parse_ep_info(head: memoryview, _data: bytes, packet_id: int, forms: Forms) -> EpInfo:
    types, intervals, interfaces = _EP_BASE.unpack(head[: _EP_BASE.size])
    size = forms.ep_info_size()
    sizes = _EP_MPS.unpack(head[96:160]) if size >= 160 else (0,) * ENDPOINTS
    streams = _EP_STREAMS.unpack(head[160:288]) if size == 288 else (0,) * ENDPOINTS
    rows = zip(types, intervals, interfaces, sizes, streams, strict=True)
    return EpInfo(tuple(EndpointEntry(*row) for row in rows), id=packet_id)


def _parse_filter(_head: memoryview, data: bytes, packet_id: int, _forms: Forms) -> FilterFilter:
    if not data or data[-1] != 0:
        raise RemoteProtocolError("filter_filter: the rules do not end in a NUL byte")
    try:
        rules = data[:-1].decode("ascii")
    except UnicodeDecodeError:
        raise RemoteProtocolError("filter_filter: the rules are not ASCII") from None
    return FilterFilter(rules, id=packet_id)


def _parse_bulk(head: memoryview, data: bytes, packet_id: int, forms: Forms) -> BulkPacket:
    endpoint, status, low, stream_id = _BULK.unpack(head[: _BULK.size])
    high = _BCD.unpack(head[8:10])[0] if forms.bulk_32bit else 0
    length = high << 16 | low
    return BulkPacket(endpoint, status, length, stream_id, data, id=packet_id)


_PARSERS: dict[type[Any], Callable[[memoryview, bytes, int, Forms], Any]] = {
    Hello: _parse_hello,
    DeviceConnect: _parse_connect,
    InterfaceInfo: _parse_interfaces,
    EpInfo: _parse_ep_info,
    FilterFilter: _parse_filter,
    BulkPacket: _parse_bulk,
}
