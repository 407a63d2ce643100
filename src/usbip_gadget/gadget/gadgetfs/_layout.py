"""What a GadgetFS gadget shows the host, computed without a kernel.

GadgetFS (drivers/usb/gadget/legacy/inode.c) takes, in one write to its ep0 file, the tag 0,
a full-speed configuration, a high-speed configuration and the device descriptor, and serves
them to the host as written, except for what it forces:

- ``bcdUSB`` becomes 0x0200 when the descriptors are written;
- ``bMaxPacketSize0`` becomes the controller's ep0 packet size on every GET_DESCRIPTOR(DEVICE)
  (64 on the high-speed controllers it runs on);
- there is one configuration (``bNumConfigurations`` must be 1, index 1 and up stall);
- a configuration offering remote wakeup (bmAttributes bit 5) is refused, as it cannot
  signal one;
- every control IN answer, the configuration descriptor included, is cut to 256 bytes when
  the host asks for more (RBUF_SIZE; OUT data stages over 256 bytes are stalled).

Which controller endpoint file carries which remote endpoint is ``_endpoints``'s.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from usbip_gadget._errors import GadgetFsUnsupported
from usbip_gadget.gadget._differences import (
    EP0_PACKET,
    USB_2_0,
    Difference,
    Patched,
    descriptors,
    differences,
)
from usbip_gadget.gadget.gadgetfs._endpoints import EndpointSlot
from usbip_gadget.usb import (
    Configuration,
    DescriptorType,
    DeviceDescriptor,
    DeviceSnapshot,
    EndpointDescriptor,
    Speed,
    both_speeds,
)

TAG_DESCRIPTORS = 0
TAG_ENDPOINT = 1
CONTROL_LIMIT = 256  # RBUF_SIZE: the most a GadgetFS control IN answer carries
WRITE_LIMIT = 16384  # the largest descriptor write ep0 takes (4 pages)
REMOTE_WAKEUP = 0x20
_U32 = struct.Struct("<I")
_ENDPOINT_SIZE = EndpointDescriptor.LAYOUT.size  # the 7-byte form GadgetFS takes


# -- descriptors ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GadgetFsLayout:
    """The bytes GadgetFS is given, and what a high-speed host reads from it."""

    device: bytes  # as the host reads it
    full_speed: bytes  # configuration for a full-speed link
    high_speed: bytes  # configuration for a high-speed link (what the host reads)
    slots: Mapping[int, EndpointSlot]
    differences: tuple[Difference, ...]
    speed: Speed = Speed.HIGH  # the remote's

    def blob(self) -> bytes:
        """The ep0 write: tag 0, the full- and high-speed configurations, the device."""
        return _U32.pack(TAG_DESCRIPTORS) + self.full_speed + self.high_speed + self.device

    def endpoint_config(self, remote: EndpointDescriptor) -> bytes:
        """The write that configures ``remote``'s file: tag 1, then its full- and high-speed
        descriptors (of the alternate setting it belongs to, at its local address)."""
        local = dataclasses.replace(
            remote, b_endpoint_address=self.slots[remote.b_endpoint_address].local, extra=()
        )
        to_full, to_high = both_speeds(self.speed)
        full = local if to_full is None else to_full(local)
        high = local if to_high is None else to_high(local)
        return _U32.pack(TAG_ENDPOINT) + _seven(full) + _seven(high)


def _high_speed_why(speed: Speed) -> str:
    """Why the host, served at high speed, reads endpoint fields other than the remote's."""
    if speed == Speed.HIGH:
        return ""
    if speed in (Speed.LOW, Speed.FULL):
        return "a full-speed device is offered at high speed too (GadgetFS needs both)"
    return "GadgetFS runs at high speed at most"


def _seven(ep: EndpointDescriptor) -> bytes:
    """The 7-byte form GadgetFS takes (an audio endpoint's two extra bytes dropped)."""
    return bytes([_ENDPOINT_SIZE]) + ep.pack()[1:_ENDPOINT_SIZE]


def gadgetfs_reasons(snapshot: DeviceSnapshot, config_index: int = 0) -> tuple[str, ...]:
    """One line per thing GadgetFS cannot replay (the controller's endpoints aside)."""
    raw = snapshot.configurations_raw[config_index]
    reasons = []
    if len(raw) > CONTROL_LIMIT:
        reasons.append(
            f"its configuration descriptor is {len(raw)} bytes and GadgetFS answers a control "
            f"request with at most {CONTROL_LIMIT}"
        )
    for (value, interface), report in sorted(snapshot.hid_reports.items()):
        if value == snapshot.configurations[config_index].b_configuration_value and (
            len(report) > CONTROL_LIMIT
        ):
            reasons.append(
                f"interface {interface}: HID report descriptor of {len(report)} bytes, over "
                f"GadgetFS's {CONTROL_LIMIT}-byte control answers"
            )
    if 4 + 2 * len(raw) + 18 > WRITE_LIMIT:
        reasons.append(f"descriptors over the {WRITE_LIMIT}-byte GadgetFS limit")
    return tuple(reasons)


def gadgetfs_layout(
    snapshot: DeviceSnapshot, slots: Mapping[int, EndpointSlot], config_index: int = 0
) -> GadgetFsLayout:
    """The descriptors for GadgetFS and the differences a high-speed host will see."""
    reasons = gadgetfs_reasons(snapshot, config_index)
    if reasons:
        raise GadgetFsUnsupported(reasons)
    device = _device(snapshot.device_raw)
    raw = snapshot.configurations_raw[config_index]
    base = len(snapshot.device_raw)
    to_full, to_high = both_speeds(snapshot.speed)
    high = _config(raw, base, slots, to_high, _high_speed_why(snapshot.speed))
    full = _config(raw, base, slots, to_full, "")
    remote = snapshot.device_raw + raw
    shown = bytes(device.data) + bytes(high.data)
    notes = {**device.notes, **{base + k: v for k, v in high.notes.items()}}
    return GadgetFsLayout(
        device=bytes(device.data),
        full_speed=bytes(full.data),
        high_speed=bytes(high.data),
        slots=slots,
        differences=differences(remote, shown, notes),
        speed=snapshot.speed,
    )


def _device(raw: bytes) -> Patched:
    device = Patched(raw, 0)
    fields = DeviceDescriptor.LAYOUT
    device.put(0, fields, "bcdUSB", USB_2_0, "GadgetFS reports USB 2.0")
    ep0_why = "the controller's ep0 packet size (GadgetFS sets it)"
    device.put(0, fields, "bMaxPacketSize0", EP0_PACKET, ep0_why)
    device.put(0, fields, "bNumConfigurations", 1, "GadgetFS offers one configuration")
    return device


def _config(
    raw: bytes,
    base: int,
    slots: Mapping[int, EndpointSlot],
    convert: Callable[[EndpointDescriptor], EndpointDescriptor] | None,
    why: str,
) -> Patched:
    """``raw`` with its endpoints moved to their slots and, with ``convert``, re-sped."""
    kept = bytearray()
    for _at, desc in descriptors(raw):
        if convert is not None and desc[1] == DescriptorType.SS_ENDPOINT_COMPANION:
            continue  # no SuperSpeed at GadgetFS's speeds
        kept += desc
    out = Patched(bytes(kept), base)
    config = Configuration.LAYOUT
    out.put(0, config, "wTotalLength", len(kept), why or "SuperSpeed companions dropped")
    if len(out.data) > config.offset_of("bmAttributes"):
        attributes = out.get(0, config, "bmAttributes") & ~REMOTE_WAKEUP
        wakeup = "remote wakeup cleared: GadgetFS refuses it (it cannot signal one)"
        out.put(0, config, "bmAttributes", attributes, wakeup)
    for at, desc in descriptors(bytes(out.data)):
        if desc[1] != DescriptorType.ENDPOINT or len(desc) < _ENDPOINT_SIZE:
            continue
        ep = EndpointDescriptor.parse(bytes([_ENDPOINT_SIZE]) + desc[1:_ENDPOINT_SIZE])
        slot = slots.get(ep.b_endpoint_address)
        name = f"endpoint 0x{ep.b_endpoint_address:02x} "
        fields = EndpointDescriptor.LAYOUT
        if slot is not None:
            moved_why = (
                f"the controller has no free endpoint {ep.number} of this kind ({slot.file} used)"
            )
            out.put(at, fields, "bEndpointAddress", slot.local, moved_why, name)
        if convert is not None:
            moved = convert(ep)
            out.put(at, fields, "wMaxPacketSize", moved.w_max_packet_size, why, name)
            out.put(at, fields, "bInterval", moved.b_interval, why, name)
    return out
