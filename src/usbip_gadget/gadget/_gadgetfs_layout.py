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

Endpoints live in files named after the controller's endpoints (``ep1in-bulk``, ``ep-aout``
on dummy_hcd; ``ep1in``, ``ep1out`` on dwc2). A file named with a number carries that endpoint
number on controllers that route by hardware number (dwc2); a generic file (``ep-aout``) takes
the number in the descriptor written to it (the controller routes by descriptor). So the
remote's endpoint addresses are kept whenever a file with the same number, or a generic one,
can carry the endpoint; otherwise the endpoint moves to a free number, which the host sees.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from usbip_gadget._errors import GadgetFsUnsupported
from usbip_gadget.gadget._ffs_blob import as_full_speed, as_high_speed
from usbip_gadget.usb import (
    Configuration,
    DescriptorType,
    DeviceSnapshot,
    EndpointDescriptor,
    Speed,
    TransferType,
)

TAG_DESCRIPTORS = 0
TAG_ENDPOINT = 1
CONTROL_LIMIT = 256  # RBUF_SIZE: the most a GadgetFS control IN answer carries
WRITE_LIMIT = 16384  # the largest descriptor write ep0 takes (4 pages)
NO_ISOCHRONOUS = frozenset({"dummy_udc"})  # controller drivers without isochronous transfers
EP0_PACKET = 64  # gadget->ep0->maxpacket of high-speed controllers (dwc2, dummy_hcd)
USB_2_0 = 0x0200
REMOTE_WAKEUP = 0x20
_U32 = struct.Struct("<I")
_ENDPOINT_SIZE = 7


# -- endpoint files ------------------------------------------------------------------------

_TYPES_BY_SUFFIX = {
    "bulk": frozenset({TransferType.BULK, TransferType.INTERRUPT}),  # dummy: "bulk is ok"
    "int": frozenset({TransferType.INTERRUPT}),
    "iso": frozenset({TransferType.ISOCHRONOUS}),
    None: frozenset({TransferType.BULK, TransferType.INTERRUPT, TransferType.ISOCHRONOUS}),
}
_FILE_NAME = re.compile(
    r"ep(?P<number>\d+)?(?:-[a-z])?(?P<dir>in|out)?(?:-(?P<kind>bulk|int|iso))?"
)


@dataclass(frozen=True, slots=True)
class EndpointFile:
    """One of the controller's endpoints, as its GadgetFS file names it."""

    name: str
    number: int | None  # None: a generic endpoint that takes the descriptor's number
    is_in: bool | None  # None: either direction
    types: frozenset[TransferType]

    @classmethod
    def parse(cls, name: str) -> EndpointFile | None:
        """The endpoint a file name describes; None for ep0's file and anything else."""
        match = _FILE_NAME.fullmatch(name)
        if match is None or name == "ep":
            return None
        number = int(match["number"]) if match["number"] else None
        if number == 0 or (number is not None and number > 15):
            return None
        direction = match["dir"]
        is_in = None if direction is None else direction == "in"
        return cls(name, number, is_in, _TYPES_BY_SUFFIX[match["kind"]])

    def can_carry(self, ep: EndpointDescriptor) -> bool:
        direction_ok = self.is_in is None or self.is_in == ep.is_in
        return direction_ok and ep.transfer_type in self.types


@dataclass(frozen=True, slots=True)
class EndpointSlot:
    """Where a remote endpoint goes: its file, and the address the host sees."""

    remote: int
    local: int
    file: str


def remote_endpoints(config: Configuration) -> list[EndpointDescriptor]:
    """Each endpoint address of every alternate setting once, the first descriptor of it."""
    seen: dict[int, EndpointDescriptor] = {}
    for ep in config.endpoints():
        seen.setdefault(ep.b_endpoint_address, ep)
    return list(seen.values())


def map_endpoints(
    config: Configuration, file_names: Sequence[str], *, isochronous: bool = True
) -> dict[int, EndpointSlot]:
    """Remote endpoint address → the file and local address it gets.

    ``isochronous`` is False for controllers that carry no isochronous transfers
    (dummy_hcd). ``GadgetFsUnsupported`` names each endpoint no free file can carry.
    """
    files = [f for f in map(EndpointFile.parse, sorted(file_names, key=_natural)) if f]
    wanted = remote_endpoints(config)
    if not isochronous:
        iso = [ep for ep in wanted if ep.transfer_type == TransferType.ISOCHRONOUS]
        if iso:
            raise GadgetFsUnsupported(
                [f"endpoint 0x{ep.b_endpoint_address:02x} is isochronous and this controller "
                 "carries no isochronous transfers" for ep in iso]
            )  # fmt: skip
    taken: set[str] = set()
    slots: dict[int, EndpointSlot] = {}

    def place(ep: EndpointDescriptor, fits: Fit) -> None:
        for file in files:
            if file.name in taken or not file.can_carry(ep):
                continue
            local = fits(file)
            if local is None or local in used_locals(ep.b_endpoint_address):
                continue
            taken.add(file.name)
            slots[ep.b_endpoint_address] = EndpointSlot(ep.b_endpoint_address, local, file.name)
            return

    def used_locals(placing: int) -> set[int]:
        # The remote's own addresses stay reserved for the endpoints that own them.
        others = {
            e.b_endpoint_address
            for e in wanted
            if e.b_endpoint_address not in slots and e.b_endpoint_address != placing
        }
        return {slot.local for slot in slots.values()} | others

    # 1. A file with the endpoint's own number; 2. a generic file that takes any number;
    # 3. any free file, at its own number: the host then sees another address.
    for ep in wanted:
        place(ep, _own_number(ep))
    for ep in wanted:
        if ep.b_endpoint_address not in slots:
            place(ep, _any_number(ep))
    for ep in wanted:
        if ep.b_endpoint_address not in slots:
            place(ep, _file_number(ep))
    missing = [ep for ep in wanted if ep.b_endpoint_address not in slots]
    if missing:
        raise GadgetFsUnsupported(
            [
                f"no free controller endpoint can carry endpoint 0x{ep.b_endpoint_address:02x} "
                f"({_kind(ep)}) (the controller has {', '.join(f.name for f in files) or 'none'})"
                for ep in missing
            ]
        )
    return {address: slots[address] for address in (ep.b_endpoint_address for ep in wanted)}


Fit = Callable[[EndpointFile], int | None]  # the address a file gives, or None if it cannot


def _own_number(ep: EndpointDescriptor) -> Fit:
    def fits(file: EndpointFile) -> int | None:
        return ep.b_endpoint_address if file.number == ep.number else None

    return fits


def _any_number(ep: EndpointDescriptor) -> Fit:
    def fits(file: EndpointFile) -> int | None:
        return ep.b_endpoint_address if file.number is None else None

    return fits


def _file_number(ep: EndpointDescriptor) -> Fit:
    def fits(file: EndpointFile) -> int | None:
        return (ep.b_endpoint_address & 0x80) | file.number if file.number else None

    return fits


def _natural(name: str) -> tuple[object, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _kind(ep: EndpointDescriptor) -> str:
    return f"{ep.transfer_type.name.lower()} {'IN' if ep.is_in else 'OUT'}"


# -- descriptors ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Difference:
    """One byte of what the host reads that is not the remote device's, and why."""

    offset: int  # into the device descriptor followed by the configuration descriptor
    field: str
    remote: int | None
    local: int | None
    why: str


class _Patched:
    """A copy of descriptor bytes whose changes are each recorded with a reason."""

    def __init__(self, raw: bytes, base: int) -> None:
        self.data = bytearray(raw)
        self.base = base
        self.notes: dict[int, tuple[str, str]] = {}

    def set(self, offset: int, value: int, field: str, why: str) -> None:
        if offset < len(self.data) and self.data[offset] != value:
            self.data[offset] = value
            self.notes[offset] = (field, why)

    def set_u16(self, offset: int, value: int, field: str, why: str) -> None:
        self.set(offset, value & 0xFF, field, why)
        self.set(offset + 1, value >> 8, field, why)


def descriptors(raw: bytes) -> Iterator[tuple[int, bytes]]:
    """(offset, descriptor) for each whole descriptor in ``raw``."""
    at = 0
    while at + 2 <= len(raw) and raw[at] >= 2 and at + raw[at] <= len(raw):
        yield at, raw[at : at + raw[at]]
        at += raw[at]


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
        if self.speed == Speed.HIGH:
            full, high = as_full_speed(local), local
        elif self.speed in (Speed.LOW, Speed.FULL):
            full, high = local, as_high_speed(local, self.speed)
        else:
            high = as_high_speed(local, self.speed)
            full = as_full_speed(high)
        return _U32.pack(TAG_ENDPOINT) + _seven(full) + _seven(high)


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
    if snapshot.speed == Speed.HIGH:
        high = _config(raw, base, slots, None, "")
        full = _config(raw, base, slots, as_full_speed, "")
    elif snapshot.speed in (Speed.LOW, Speed.FULL):
        full = _config(raw, base, slots, None, "")
        high = _config(
            raw,
            base,
            slots,
            lambda ep: as_high_speed(ep, snapshot.speed),
            "a full-speed device is offered at high speed too (GadgetFS needs both)",
        )
    else:
        high = _config(
            raw,
            base,
            slots,
            lambda ep: as_high_speed(ep, snapshot.speed),
            "GadgetFS runs at high speed at most",
        )
        full = _config(
            raw, base, slots, lambda ep: as_full_speed(as_high_speed(ep, snapshot.speed)), ""
        )
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


def differences(
    remote: bytes, shown: bytes, notes: Mapping[int, tuple[str, str]]
) -> tuple[Difference, ...]:
    """Every offset where ``shown`` differs from ``remote``, with the recorded reason."""
    found = []
    for offset in range(max(len(remote), len(shown))):
        a = remote[offset] if offset < len(remote) else None
        b = shown[offset] if offset < len(shown) else None
        if a != b:
            field, why = notes.get(offset, ("byte", "the descriptors are shorter or longer"))
            found.append(Difference(offset, field, a, b, why))
    return tuple(found)


def _device(raw: bytes) -> _Patched:
    device = _Patched(raw, 0)
    device.set_u16(2, USB_2_0, "bcdUSB", "GadgetFS reports USB 2.0")
    device.set(
        7, EP0_PACKET, "bMaxPacketSize0", "the controller's ep0 packet size (GadgetFS sets it)"
    )
    device.set(17, 1, "bNumConfigurations", "GadgetFS offers one configuration")
    return device


def _config(
    raw: bytes,
    base: int,
    slots: Mapping[int, EndpointSlot],
    convert: Callable[[EndpointDescriptor], EndpointDescriptor] | None,
    why: str,
) -> _Patched:
    """``raw`` with its endpoints moved to their slots and, with ``convert``, re-sped."""
    kept = bytearray()
    for _at, desc in descriptors(raw):
        if convert is not None and desc[1] == DescriptorType.SS_ENDPOINT_COMPANION:
            continue  # no SuperSpeed at GadgetFS's speeds
        kept += desc
    out = _Patched(bytes(kept), base)
    out.set_u16(2, len(kept), "wTotalLength", why or "SuperSpeed companions dropped")
    if len(out.data) > 7:
        out.set(
            7,
            out.data[7] & ~REMOTE_WAKEUP,
            "bmAttributes",
            "remote wakeup cleared: GadgetFS refuses it (it cannot signal one)",
        )
    for at, desc in descriptors(bytes(out.data)):
        if desc[1] != DescriptorType.ENDPOINT or len(desc) < _ENDPOINT_SIZE:
            continue
        ep = EndpointDescriptor.parse(bytes([_ENDPOINT_SIZE]) + desc[1:_ENDPOINT_SIZE])
        slot = slots.get(ep.b_endpoint_address)
        name = f"endpoint 0x{ep.b_endpoint_address:02x}"
        if slot is not None:
            out.set(
                at + 2,
                slot.local,
                f"{name} bEndpointAddress",
                f"the controller has no free endpoint {ep.number} of this kind ({slot.file} used)",
            )
        if convert is not None:
            moved = convert(ep)
            out.set_u16(at + 4, moved.w_max_packet_size, f"{name} wMaxPacketSize", why)
            out.set(at + 6, moved.b_interval, f"{name} bInterval", why)
    return out


def same_endpoint_addresses(config: Configuration) -> dict[int, EndpointSlot]:
    """Slots that keep every address, for planning where the controller is not known."""
    return {
        ep.b_endpoint_address: EndpointSlot(ep.b_endpoint_address, ep.b_endpoint_address, "")
        for ep in remote_endpoints(config)
    }


__all__ = [
    "CONTROL_LIMIT",
    "Difference",
    "EndpointFile",
    "EndpointSlot",
    "GadgetFsLayout",
    "GadgetFsUnsupported",
    "differences",
    "gadgetfs_layout",
    "gadgetfs_reasons",
    "map_endpoints",
    "remote_endpoints",
    "same_endpoint_addresses",
]
