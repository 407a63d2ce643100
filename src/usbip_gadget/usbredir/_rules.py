"""The rules a usbredir packet must meet beyond its layout, checked before any packet is
built or sent: who sends it, the capability it needs, endpoint directions, lengths and data
(the checks usbredirparser makes, and a few stricter ones). ``RemoteProtocolError``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from usbip_gadget._errors import RemoteProtocolError
from usbip_gadget.usbredir._constants import MAX_BULK_LENGTH, MAX_INTERFACES, Cap, PacketType, Role
from usbip_gadget.usbredir._forms import Forms, sender_may_send
from usbip_gadget.usbredir._messages import (
    BufferedBulkPacket,
    BulkPacket,
    BulkReceivingStatus,
    ControlPacket,
    FilterFilter,
    InterfaceInfo,
    InterruptPacket,
    InterruptReceivingStatus,
    IsoPacket,
    Packet,
    StartBulkReceiving,
    StartInterruptReceiving,
    StopBulkReceiving,
    StopInterruptReceiving,
)


def check_packet(packet: Packet, sender: Role, forms: Forms, *, own: bool) -> None:
    """The rules a packet must meet; ``own``: checked by its receiver (a capability its
    packets need must be the receiver's, as usbredirparser checks), else by its sender
    (both sides'). ``RemoteProtocolError``."""
    kind, name = packet.TYPE, packet.TYPE.name.lower()
    if not sender_may_send(sender, kind):
        raise RemoteProtocolError(f"{name} sent by the usb-{sender.name.lower()}")
    needs = _NEEDS_CAP.get(kind)
    if needs is not None and not (needs in forms.own if own else forms.both(needs)):
        raise RemoteProtocolError(f"{name} without the {needs.name.lower()} capability")
    for check in _CHECKS.get(type(packet), ()):
        check(packet, sender, name, forms)


def _in_endpoint(packet: Any, _sender: Role, name: str, _forms: Forms) -> None:
    if not packet.endpoint & 0x80:
        raise RemoteProtocolError(f"{name}: endpoint 0x{packet.endpoint:02x} is not IN")


def _bulk_limit(packet: Any, _sender: Role, name: str, forms: Forms) -> None:
    length: int = (
        packet.bytes_per_transfer if isinstance(packet, StartBulkReceiving) else packet.length
    )
    if length > MAX_BULK_LENGTH:
        raise RemoteProtocolError(f"{name}: length {length} over {MAX_BULK_LENGTH}")
    if isinstance(packet, BulkPacket) and length > 0xFFFF and not forms.bulk_32bit:
        raise RemoteProtocolError(f"{name}: length {length} needs 32bits_bulk_length")


def _data_direction(packet: Any, sender: Role, name: str, _forms: Forms) -> None:
    if packet.length < 0:
        raise RemoteProtocolError(f"{name}: length {packet.length}")
    expected = bool(packet.endpoint & 0x80) == (sender is Role.HOST)
    if expected:
        if len(packet.data) != packet.length:
            raise RemoteProtocolError(
                f"{name}: {len(packet.data)} bytes of data for length {packet.length}"
            )
        return
    if packet.data:
        raise RemoteProtocolError(f"{name}: data in the direction that carries none")
    if isinstance(packet, IsoPacket | BufferedBulkPacket):
        raise RemoteProtocolError(f"{name} in the direction that carries no data")
    if isinstance(packet, InterruptPacket) and sender is Role.GUEST:
        raise RemoteProtocolError(f"{name}: interrupt IN is received, never asked for")


def _control_endpoint(packet: Any, _sender: Role, name: str, _forms: Forms) -> None:
    if packet.endpoint not in (0x00, 0x80):
        raise RemoteProtocolError(f"{name}: endpoint 0x{packet.endpoint:02x} is not 0x00 or 0x80")


def _entries(packet: Any, _sender: Role, name: str, _forms: Forms) -> None:
    if isinstance(packet, InterfaceInfo) and len(packet.interfaces) > MAX_INTERFACES:
        raise RemoteProtocolError(f"{name}: {len(packet.interfaces)} interfaces")


def _filter_text(packet: Any, _sender: Role, name: str, _forms: Forms) -> None:
    if "\0" in packet.rules or not packet.rules.isascii():
        raise RemoteProtocolError(f"{name}: rules must be ASCII without NUL")


_NEEDS_CAP = {
    PacketType.FILTER_FILTER: Cap.FILTER,
    PacketType.FILTER_REJECT: Cap.FILTER,
    PacketType.DEVICE_DISCONNECT_ACK: Cap.DEVICE_DISCONNECT_ACK,
    PacketType.START_BULK_RECEIVING: Cap.BULK_RECEIVING,
    PacketType.STOP_BULK_RECEIVING: Cap.BULK_RECEIVING,
    PacketType.BULK_RECEIVING_STATUS: Cap.BULK_RECEIVING,
    PacketType.BUFFERED_BULK_PACKET: Cap.BULK_RECEIVING,
}
_CHECKS: dict[type[Any], tuple[Callable[[Any, Role, str, Forms], None], ...]] = {
    StartInterruptReceiving: (_in_endpoint,),
    StopInterruptReceiving: (_in_endpoint,),
    InterruptReceivingStatus: (_in_endpoint,),
    StartBulkReceiving: (_in_endpoint, _bulk_limit),
    StopBulkReceiving: (_in_endpoint,),
    BulkReceivingStatus: (_in_endpoint,),
    BufferedBulkPacket: (_in_endpoint, _bulk_limit, _data_direction),
    BulkPacket: (_bulk_limit, _data_direction),
    ControlPacket: (_control_endpoint, _data_direction),
    IsoPacket: (_data_direction,),
    InterruptPacket: (_data_direction,),
    InterfaceInfo: (_entries,),
    FilterFilter: (_filter_text,),
}
