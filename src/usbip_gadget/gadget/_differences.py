"""What the host reads that is not the remote device's: each changed byte with its reason.

Both kernel interfaces change a few bytes of what they replay (``bcdUSB``, the controller's
``bMaxPacketSize0``, one configuration, renumbered interfaces or endpoints); planning shows
every such byte before anything is plugged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from usbip_gadget.usb import Layout

EP0_PACKET = 64  # gadget->ep0->maxpacket of high-speed controllers (dwc2, dummy_hcd)
USB_2_0 = 0x0200


@dataclass(frozen=True, slots=True)
class Difference:
    """One byte of what the host reads that is not the remote device's, and why."""

    offset: int  # into the device descriptor followed by the configuration descriptor
    field: str
    remote: int | None
    local: int | None
    why: str


class Patched:
    """A copy of descriptor bytes whose changes are each recorded with a reason."""

    def __init__(self, raw: bytes, base: int) -> None:
        self.data = bytearray(raw)
        self.base = base
        self.notes: dict[int, tuple[str, str]] = {}

    def set(self, offset: int, value: int, field: str, why: str) -> None:
        """Byte ``offset`` becomes ``value`` (if the bytes reach that far)."""
        if offset < len(self.data) and self.data[offset] != value:
            self.data[offset] = value
            self.notes[offset] = (field, why)

    def put(
        self, at: int, layout: Layout, spec: str, value: int, why: str, label: str = ""
    ) -> None:
        """Field ``spec`` of the ``layout`` descriptor starting at ``at`` becomes ``value``
        (little-endian, as wide as the field); the change is noted as ``label`` + ``spec``."""
        start = at + layout.offset_of(spec)
        for i in range(layout.size_of(spec)):
            self.set(start + i, (value >> (8 * i)) & 0xFF, label + spec, why)

    def get(self, at: int, layout: Layout, spec: str) -> int:
        """Field ``spec`` of the ``layout`` descriptor starting at ``at``, as it is now."""
        start = at + layout.offset_of(spec)
        return int.from_bytes(self.data[start : start + layout.size_of(spec)], "little")


def descriptors(raw: bytes) -> Iterator[tuple[int, bytes]]:
    """(offset, descriptor) for each whole descriptor in ``raw``."""
    at = 0
    while at + 2 <= len(raw) and raw[at] >= 2 and at + raw[at] <= len(raw):
        yield at, raw[at : at + raw[at]]
        at += raw[at]


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
