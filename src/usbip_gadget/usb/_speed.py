"""An endpoint as a device of another speed describes it, and the interval of its URBs.

USB 2.0 §9.6.6 (Table 9-13) gives bInterval a meaning per speed and transfer type:
full/low-speed interrupt endpoints poll every bInterval frames (1 ms); full-speed
isochronous endpoints and every periodic endpoint at high speed and faster every
2^(bInterval-1) frames or microframes (125 µs), bInterval 1..16. wMaxPacketSize limits
differ too: bulk 64 bytes at full speed and 512 at high speed (§5.8.3), interrupt 64 and
1024 (§5.7.3), isochronous 1023 and 1024 (§5.6.3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from usbip_gadget.usb._config import EndpointDescriptor
from usbip_gadget.usb._enums import Speed, TransferType


def _periodic(ep: EndpointDescriptor) -> bool:
    return ep.transfer_type in (TransferType.INTERRUPT, TransferType.ISOCHRONOUS)


def as_high_speed(ep: EndpointDescriptor, speed: Speed) -> EndpointDescriptor:
    """The endpoint of a ``speed`` device as a high-speed device would describe it."""
    if ep.transfer_type == TransferType.BULK and speed != Speed.HIGH:
        return dataclasses.replace(ep, w_max_packet_size=512)
    if speed >= Speed.SUPER and _periodic(ep):
        return dataclasses.replace(ep, w_max_packet_size=min(ep.max_packet_size, 1024))
    if speed in (Speed.LOW, Speed.FULL) and ep.transfer_type == TransferType.INTERRUPT:
        # bInterval in frames → exponent of a period in microframes, the largest power of
        # two not above it.
        exponent = min(16, (ep.b_interval * 8).bit_length())
        return dataclasses.replace(ep, b_interval=exponent)
    if speed in (Speed.LOW, Speed.FULL) and ep.transfer_type == TransferType.ISOCHRONOUS:
        # 2^(e-1) frames are 2^(e+2) microframes.
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


def urb_interval(endpoint: EndpointDescriptor, speed: int) -> int:
    """``urb->interval`` for a periodic endpoint, as Linux drivers set it (usb_fill_int_urb).

    High speed and faster count in microframes, 2^(bInterval-1); full/low-speed interrupt
    endpoints in frames, bInterval; full-speed isochronous in frames, 2^(bInterval-1).
    A server's usb_submit_urb refuses 0 for a periodic endpoint (EINVAL); bulk and control
    endpoints get 0.
    """
    kind = endpoint.transfer_type
    if kind not in (TransferType.INTERRUPT, TransferType.ISOCHRONOUS):
        return 0
    b_interval = max(1, endpoint.b_interval)
    if speed >= Speed.HIGH or kind == TransferType.ISOCHRONOUS:
        return 1 << (min(b_interval, 16) - 1)
    return b_interval


Convert = Callable[[EndpointDescriptor], EndpointDescriptor]


def both_speeds(speed: Speed) -> tuple[Convert | None, Convert | None]:
    """How an endpoint of a device running at ``speed`` is described at full speed and at
    high speed, a gadget offering both: (full, high), None where it stays as it is."""
    if speed == Speed.HIGH:
        return as_full_speed, None
    if speed in (Speed.LOW, Speed.FULL):
        return None, lambda ep: as_high_speed(ep, speed)
    return (lambda ep: as_full_speed(as_high_speed(ep, speed))), (
        lambda ep: as_high_speed(ep, speed)
    )
