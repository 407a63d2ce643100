"""Hostile descriptors: the real vectors of ``tests/usb/vectors.py`` mutated, spliced,
truncated and rebuilt from random descriptor sequences.

A configuration is built three ways: a real one as it is or mutated byte by byte; a
sequence of plausible descriptors (interfaces, IADs, endpoints of each kind and size, HID,
class-specific, SuperSpeed companions, junk) taken from the vectors and made up, its header
fixed up or not; or random bytes behind a valid header. Fixing the header (wTotalLength,
bNumInterfaces) now and then gets the cases past the first check and into the tree.
"""

from __future__ import annotations

import random
import struct

from tests.usb.vectors import (
    ALL_CONFIGS,
    KEYBOARD_DEVICE,
    KEYBOARD_REPORT,
    MASS_STORAGE_CONFIG,
    MASS_STORAGE_DEVICE,
)
from tools.fuzz._mutate import edge_u8, edge_u16, mutate, splice

from usbip_gadget.usb import Speed, encode_lang_ids, encode_string, split_descriptors

# A vendor device with two bulk endpoints and an interrupt one (as in tests/bridge).
VENDOR_DEVICE = bytes.fromhex("120100020000004034127856000100000001")
VENDOR_CONFIG = bytes.fromhex(
    "090230000202008032" "0904030002ff000000" "07058102400000" "07050202400000"
    "0904050001ff000000" "0705830308000a"
)  # fmt: skip
DEVICES = (MASS_STORAGE_DEVICE, KEYBOARD_DEVICE, VENDOR_DEVICE)
CONFIGS = (*ALL_CONFIGS.values(), VENDOR_CONFIG)
QUALIFIER = bytes.fromhex("0a060002000000400100")
BOS = bytes.fromhex("050f16000207100206000000000a100300000e0001000a")  # USB 2.0 ext, SS
SPEEDS = tuple(Speed)

_PIECES = tuple(
    piece for config in CONFIGS for piece in split_descriptors(config[9:], lenient=True)
)


def _interface(rng: random.Random, number: int, alt: int, endpoints: int) -> bytes:
    cls = rng.choice((0x02, 0x03, 0x08, 0x0A, 0xFF, 0x01, 0x0E, edge_u8(rng)))
    protocol = 0x50 if cls == 0x08 and rng.random() < 0.7 else edge_u8(rng)
    return bytes((9, 4, number, alt, endpoints, cls, edge_u8(rng), protocol, edge_u8(rng)))


def _endpoint(rng: random.Random) -> bytes:
    address = rng.choice((0x81, 0x02, 0x83, 0x04, 0x8F, 0x00, 0x80, edge_u8(rng)))
    attributes = rng.choice((0, 1, 2, 3, 0x05, 0x0D, 0x11, edge_u8(rng)))
    size = rng.choice((0, 8, 64, 512, 1023, 1024, 0x1400, 0x1C00, 0x07FF, edge_u16(rng)))
    length = 9 if rng.random() < 0.1 else 7
    tail = bytes((edge_u8(rng), 0)) if length == 9 else b""
    return bytes((length, 5, address, attributes)) + struct.pack("<H", size) + bytes(
        (rng.choice((0, 1, 4, 10, 16, 255)),)
    ) + tail  # fmt: skip


def _extra(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(_PIECES)
    if roll < 0.5:  # HID, with a report descriptor length
        return bytes((9, 0x21, 0x11, 1, 0, 1, 0x22)) + struct.pack("<H", edge_u16(rng))
    if roll < 0.6:
        return bytes((6, 0x30, edge_u8(rng), edge_u8(rng))) + struct.pack("<H", edge_u16(rng))
    if roll < 0.7:
        return bytes((8, 0x0B, rng.randrange(4), rng.randrange(1, 4), 2, 2, 0, edge_u8(rng)))
    body = rng.randbytes(rng.choice((0, 1, 3, 10, rng.randrange(40))))
    return bytes((len(body) + 2, rng.choice((0x24, 0x25, 0x21, 0x41, edge_u8(rng))))) + body


def structural_config(rng: random.Random) -> bytes:
    """A configuration made of plausible descriptors in a plausible, or not, order."""
    body = bytearray()
    interfaces = rng.choice((0, 1, 1, 2, 3, rng.randrange(8)))
    for number in range(interfaces):
        for alt in range(rng.choice((1, 1, 1, 2, 3))):
            count = rng.choice((0, 1, 2, 2, 3, rng.randrange(6)))
            body += _interface(rng, number, alt, count)
            for _ in range(rng.choice((0, 0, 1, 2))):
                body += _extra(rng)
            for _ in range(count):
                body += _endpoint(rng)
                if rng.random() < 0.15:
                    body += _extra(rng)
    return config_header(rng, len(body), interfaces) + bytes(body)


def config_header(rng: random.Random, body: int, interfaces: int) -> bytes:
    value = rng.choice((1, 1, 2, 0, 255))
    attributes = rng.choice((0x80, 0xA0, 0xC0, 0xE0, edge_u8(rng)))
    return struct.pack("<BBHBBBBB", 9, 2, 9 + body, interfaces, value, 0, attributes, 50)


def fix_header(rng: random.Random, raw: bytes) -> bytes:
    """``raw`` with a well-formed header claiming its own length (sometimes)."""
    if len(raw) < 9 or rng.random() < 0.5:
        return raw
    return config_header(rng, len(raw) - 9, raw[4]) + raw[9:]


def config_raw(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(CONFIGS)
    if roll < 0.5:
        return fix_header(rng, mutate(rng, rng.choice(CONFIGS)))
    if roll < 0.85:
        raw = structural_config(rng)
        return raw if rng.random() < 0.7 else fix_header(rng, mutate(rng, raw))
    if roll < 0.95:
        return fix_header(rng, splice(rng, rng.choice(CONFIGS), rng.choice(CONFIGS)))
    return fix_header(rng, bytes(9) + rng.randbytes(rng.randrange(64)))


def device_raw(rng: random.Random, *, configurations: int | None = None) -> bytes:
    raw = bytearray(rng.choice(DEVICES))
    if rng.random() < 0.5:
        struct.pack_into("<H", raw, 2, rng.choice((0x0110, 0x0200, 0x0201, 0x0210, 0x0300)))
    if rng.random() < 0.4:
        raw[14:17] = bytes(rng.choice((0, 1, 2, 3, 4, 0xEE, edge_u8(rng))) for _ in range(3))
    if configurations is not None:
        raw[17] = configurations
    elif rng.random() < 0.2:
        raw[17] = rng.choice((0, 2, 3, 255))
    return bytes(raw) if rng.random() < 0.8 else mutate(rng, bytes(raw), most=2)


def string_raw(rng: random.Random, index: int) -> bytes:
    roll = rng.random()
    if roll < 0.6:
        text = rng.choice(("Acme", "Disk", "", "Ünïcødé €", "x" * 126, f"S/N {index}"))
        return encode_string(text)
    if roll < 0.8:
        return mutate(rng, encode_string(f"string {index}"))
    return bytes((rng.choice((0, 1, 2, 3, 255)), rng.choice((3, 3, 0, 1)))) + rng.randbytes(
        rng.randrange(300)
    )  # fmt: skip


def lang_ids_raw(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.6:
        return encode_lang_ids([0x0409] if rng.random() < 0.7 else [0x0409, 0x0407])
    if roll < 0.75:
        return encode_lang_ids([edge_u16(rng) for _ in range(rng.choice((0, 1, 3, 20, 126)))])
    return mutate(rng, encode_lang_ids([0x0409, 0x0407, 0x040C]))


def bos_raw(rng: random.Random) -> bytes:
    return BOS if rng.random() < 0.4 else mutate(rng, BOS)


def qualifier_raw(rng: random.Random) -> bytes:
    return QUALIFIER if rng.random() < 0.5 else mutate(rng, QUALIFIER)


def report_raw(rng: random.Random, length: int) -> bytes:
    if rng.random() < 0.5:
        return KEYBOARD_REPORT[:length]
    return rng.randbytes(min(length, rng.choice((0, 1, length, 300, 4096))))


def strings(rng: random.Random, indexes: list[int]) -> dict[int, dict[int, str]]:
    """LANGID → index → text, as enumeration would have read them."""
    langs = rng.choice(((), (0x0409,), (0x0409, 0x0407)))
    texts = ("Acme", "", "x" * 126, "\0nul", "é€😀")
    return {lang: {i: rng.choice(texts) for i in indexes if rng.random() < 0.8} for lang in langs}


__all__ = [
    "CONFIGS",
    "DEVICES",
    "MASS_STORAGE_CONFIG",
    "SPEEDS",
    "bos_raw",
    "config_raw",
    "device_raw",
    "lang_ids_raw",
    "qualifier_raw",
    "report_raw",
    "string_raw",
    "strings",
    "structural_config",
]
