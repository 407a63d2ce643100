"""String descriptors (USB 2.0 §9.6.7): UTF-16LE text, and string 0's list of LANGIDs."""

from __future__ import annotations

import struct
from collections.abc import Iterable

from usbip_gadget._errors import DescriptorError, LocalProtocolError
from usbip_gadget.usb._common import check_u16
from usbip_gadget.usb._enums import DescriptorType
from usbip_gadget.usb._layouts import STRING

MAX_STRING_BYTES = 252  # bLength is one byte and even: 254 at most, 2 of them the header.

LANG_ID_US_ENGLISH = 0x0409


def _payload(data: bytes, what: str, *, lenient: bool) -> bytes:
    """The bytes after bLength/bDescriptorType, checked (or, when lenient, trimmed)."""
    if len(data) < STRING.size:
        raise DescriptorError(f"{what}: {len(data)} bytes, need at least 2")
    fields = STRING.unpack(data)
    size, dtype = fields["bLength"], fields["bDescriptorType"]
    if dtype != DescriptorType.STRING:
        raise DescriptorError(f"{what}: bDescriptorType is {dtype:#04x}, expected 0x03")
    if lenient:
        end = max(STRING.size, min(size, len(data)))
        return data[STRING.size : end - (end % 2)]
    if size != len(data):
        raise DescriptorError(f"{what}: bLength is {size} but {len(data)} bytes were given")
    if size % 2:
        raise DescriptorError(f"{what}: bLength {size} is odd")
    return data[STRING.size :]


def decode_string(data: bytes, *, lenient: bool = False) -> str:
    """The text of a string descriptor.

    Strict mode requires bLength to equal ``len(data)``, to be even, and the UTF-16LE to be
    valid. Lenient mode trusts the shorter of bLength and the data, drops an odd last byte and
    replaces undecodable code units. bDescriptorType must be STRING in both modes.
    """
    payload = _payload(data, "string descriptor", lenient=lenient)
    try:
        return payload.decode("utf-16-le", errors="replace" if lenient else "strict")
    except UnicodeDecodeError as exc:
        raise DescriptorError(f"string descriptor: invalid UTF-16LE ({exc.reason})") from None


def encode_string(text: str) -> bytes:
    """The string descriptor carrying ``text``; ``LocalProtocolError`` if it does not fit."""
    try:
        payload = text.encode("utf-16-le")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"string cannot be encoded as UTF-16: {exc.reason}") from None
    if len(payload) > MAX_STRING_BYTES:
        raise LocalProtocolError(f"string is {len(payload)} bytes in UTF-16, at most 252 fit")
    return STRING.pack(None, bLength=STRING.size + len(payload)) + payload


def decode_lang_ids(data: bytes, *, lenient: bool = False) -> list[int]:
    """The LANGIDs (wLANGID[]) of string descriptor 0, in device order."""
    payload = _payload(data, "string descriptor 0", lenient=lenient)
    return [lang_id for (lang_id,) in struct.iter_unpack("<H", payload)]


def encode_lang_ids(lang_ids: Iterable[int]) -> bytes:
    """String descriptor 0 listing ``lang_ids``."""
    ids = list(lang_ids)
    for lang_id in ids:
        check_u16("LANGID", lang_id)
    if len(ids) * 2 > MAX_STRING_BYTES:
        raise LocalProtocolError(f"{len(ids)} LANGIDs do not fit in one descriptor")
    payload = struct.pack(f"<{len(ids)}H", *ids)
    return STRING.pack(None, bLength=STRING.size + len(payload)) + payload
