"""Errors of the descriptor layer and the small checks every codec here shares."""

from __future__ import annotations

from usbip_gadget._errors import DescriptorError, LocalProtocolError


def check_int(name: str, value: int, maximum: int) -> None:
    """Raise ``LocalProtocolError`` unless ``0 <= value <= maximum`` (and ``value`` is an int)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LocalProtocolError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise LocalProtocolError(f"{name}={value} is out of range 0..{maximum}")


def check_u8(name: str, value: int) -> None:
    """A one-byte field."""
    check_int(name, value, 0xFF)


def check_u16(name: str, value: int) -> None:
    """A two-byte field."""
    check_int(name, value, 0xFFFF)


def check_header(data: bytes, what: str, dtype: int, sizes: tuple[int, ...]) -> None:
    """Check that ``data`` is one descriptor of type ``dtype`` with a bLength in ``sizes``.

    Raises ``DescriptorError`` naming ``what``.
    """
    if len(data) < 2:
        raise DescriptorError(f"{what}: {len(data)} bytes, need at least 2")
    if data[1] != dtype:
        raise DescriptorError(f"{what}: bDescriptorType is {data[1]:#04x}, expected {dtype:#04x}")
    if data[0] not in sizes:
        raise DescriptorError(f"{what}: bLength is {data[0]}, expected {_sizes(sizes)}")
    if len(data) != data[0]:
        raise DescriptorError(f"{what}: bLength is {data[0]} but {len(data)} bytes were given")


def _sizes(sizes: tuple[int, ...]) -> str:
    return " or ".join(str(size) for size in sizes)


def hex_bytes(data: bytes) -> str:
    """Bytes as lsusb shows them: two hex digits each, separated by spaces."""
    return data.hex(" ")
