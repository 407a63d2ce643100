"""What both sides of a usbredir connection announced, as the codec needs it, and which side
may send which packet type."""

from __future__ import annotations

from dataclasses import dataclass

from usbip_gadget.usbredir._constants import Cap, PacketType, Role


@dataclass(frozen=True, slots=True)
class Forms:
    """What both sides announced, as the codec needs it. ``own``: this side's capabilities
    (a receiver checks filter, disconnect-ack and bulk-receiving packets against its own;
    a sender against the peer's, ``peer``)."""

    own: frozenset[int]
    peer: frozenset[int]

    def both(self, cap: Cap) -> bool:
        return cap in self.own and cap in self.peer

    @property
    def ids_64bit(self) -> bool:
        return self.both(Cap.IDS_64BIT)

    @property
    def bulk_32bit(self) -> bool:
        return self.both(Cap.BULK_LENGTH_32BIT)

    def ep_info_size(self) -> int:
        if self.both(Cap.BULK_STREAMS) and self.both(Cap.EP_INFO_MAX_PACKET_SIZE):
            return 288
        return 160 if self.both(Cap.EP_INFO_MAX_PACKET_SIZE) else 96


#: Before the peer's hello: no capability is taken as shared.
HELLO_FORMS = Forms(frozenset(), frozenset())

_HOST_SENDS = frozenset({
    PacketType.DEVICE_CONNECT, PacketType.DEVICE_DISCONNECT, PacketType.INTERFACE_INFO,
    PacketType.EP_INFO, PacketType.CONFIGURATION_STATUS, PacketType.ALT_SETTING_STATUS,
    PacketType.ISO_STREAM_STATUS, PacketType.INTERRUPT_RECEIVING_STATUS,
    PacketType.BULK_STREAMS_STATUS, PacketType.BULK_RECEIVING_STATUS,
    PacketType.BUFFERED_BULK_PACKET,
})  # fmt: skip
BOTH_SEND = frozenset({
    PacketType.HELLO, PacketType.FILTER_FILTER, PacketType.CONTROL_PACKET,
    PacketType.BULK_PACKET, PacketType.ISO_PACKET, PacketType.INTERRUPT_PACKET,
})  # fmt: skip


def sender_may_send(sender: Role, kind: PacketType) -> bool:
    """Whether a packet of type ``kind`` may come from ``sender``."""
    if kind in BOTH_SEND:
        return True
    return (kind in _HOST_SENDS) == (sender is Role.HOST)
