"""An endpoint as a device of another speed would describe it (USB 2.0 §9.6.6).

Both kernel backends offer a remote device at full and high speed, whatever speed it runs at.
"""

from __future__ import annotations

import dataclasses

from usbip_gadget.usb import EndpointDescriptor, Speed, TransferType


def is_periodic(ep: EndpointDescriptor) -> bool:
    return ep.transfer_type in (TransferType.INTERRUPT, TransferType.ISOCHRONOUS)


def as_high_speed(ep: EndpointDescriptor, speed: Speed) -> EndpointDescriptor:
    """The endpoint as a high-speed device would describe it."""
    if ep.transfer_type == TransferType.BULK and speed != Speed.HIGH:
        return dataclasses.replace(ep, w_max_packet_size=512)
    if speed >= Speed.SUPER and is_periodic(ep):
        return dataclasses.replace(ep, w_max_packet_size=min(ep.max_packet_size, 1024))
    if speed in (Speed.LOW, Speed.FULL) and ep.transfer_type == TransferType.INTERRUPT:
        # bInterval in frames → exponent of a period in microframes (USB 2.0 §9.6.6).
        exponent = min(16, (ep.b_interval * 8).bit_length())
        return dataclasses.replace(ep, b_interval=exponent)
    if speed in (Speed.LOW, Speed.FULL) and ep.transfer_type == TransferType.ISOCHRONOUS:
        return dataclasses.replace(ep, b_interval=min(16, max(1, ep.b_interval) + 3))
    return ep


def as_full_speed(ep: EndpointDescriptor) -> EndpointDescriptor:
    """A high-speed endpoint as a full-speed device would describe it."""
    if ep.transfer_type == TransferType.BULK:
        return dataclasses.replace(ep, w_max_packet_size=64)
    exponent = max(1, min(16, ep.b_interval))
    if ep.transfer_type == TransferType.INTERRUPT:
        # 2^(e-1) microframes → frames, at least 1 and at most 255.
        frames = max(1, min(255, (1 << (exponent - 1)) // 8))
        return dataclasses.replace(
            ep, w_max_packet_size=min(ep.max_packet_size, 64), b_interval=frames
        )
    if ep.transfer_type == TransferType.ISOCHRONOUS:
        return dataclasses.replace(
            ep, w_max_packet_size=min(ep.max_packet_size, 1023), b_interval=max(1, exponent - 3)
        )
    return ep
