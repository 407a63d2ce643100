"""Descriptors as bytes: cutting a run of them apart by bLength, and keeping one unparsed."""

from __future__ import annotations

from dataclasses import dataclass

from usbip_gadget._errors import DescriptorError, LocalProtocolError
from usbip_gadget.usb._common import check_u8


@dataclass(frozen=True, slots=True)
class RawDescriptor:
    """A descriptor kept as bytes: class-specific, vendor, or anything not modelled here.

    ``data`` is everything after bLength and bDescriptorType; bLength is computed.
    """

    b_descriptor_type: int
    data: bytes = b""

    def __post_init__(self) -> None:
        check_u8("bDescriptorType", self.b_descriptor_type)
        if len(self.data) > 253:
            raise LocalProtocolError(f"descriptor body of {len(self.data)} bytes exceeds 253")

    @property
    def b_length(self) -> int:
        """bLength: the whole descriptor's size."""
        return len(self.data) + 2

    @property
    def subtype(self) -> int | None:
        """bDescriptorSubtype (the third byte) of a class-specific descriptor, if present."""
        return self.data[0] if self.data else None

    def pack(self) -> bytes:
        """The whole descriptor."""
        return bytes((self.b_length, self.b_descriptor_type)) + self.data

    @classmethod
    def parse(cls, data: bytes) -> RawDescriptor:
        """Wrap exactly one descriptor (bLength must equal ``len(data)``)."""
        if len(data) < 2 or data[0] != len(data):
            raise DescriptorError(f"descriptor: bLength does not match {len(data)} bytes")
        return cls(data[1], bytes(data[2:]))


def pack_all(descriptors: tuple[RawDescriptor, ...]) -> bytes:
    """The descriptors one after the other."""
    return b"".join(descriptor.pack() for descriptor in descriptors)


def split_descriptors(data: bytes, *, lenient: bool = False) -> list[bytes]:
    """Cut ``data`` into whole descriptors by their bLength.

    Strict mode raises ``DescriptorError`` on a bLength below 2 or one that overruns the
    data; lenient mode stops there and returns the descriptors before it.
    """
    pieces: list[bytes] = []
    offset = 0
    while offset < len(data):
        problem = _problem(data, offset)
        if problem is not None:
            if lenient:
                break
            raise DescriptorError(f"descriptor at offset {offset}: {problem}")
        end = offset + data[offset]
        pieces.append(bytes(data[offset:end]))
        offset = end
    return pieces


def _problem(data: bytes, offset: int) -> str | None:
    left = len(data) - offset
    if left < 2:
        return f"only {left} byte left, a descriptor needs 2"
    if data[offset] < 2:
        return f"bLength {data[offset]} is below 2"
    if data[offset] > left:
        return f"bLength {data[offset]} overruns the {left} bytes left"
    return None
