"""Seeded byte mutation and fragmentation, shared by every target.

Everything takes a ``random.Random`` so that a case is reproduced from its seed alone.
Mutations favour what breaks parsers: lengths and counts at their edges (0, 1, 0x7f, 0x80,
0xff, 0xffff, 0xffffffff, 2**31), bytes cut off or duplicated, and pieces of one valid
message spliced into another.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence

_EDGE_U8 = (0, 1, 2, 0x7F, 0x80, 0xFE, 0xFF)
_EDGE_U16 = (0, 1, 8, 9, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)
_EDGE_U32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, 1024, 1025, 16 << 20)
_U16_FORMATS = ("<H", ">H")
_U32_FORMATS = ("<I", ">I")


def edge_u8(rng: random.Random) -> int:
    return rng.choice(_EDGE_U8) if rng.random() < 0.6 else rng.randrange(256)


def edge_u16(rng: random.Random) -> int:
    return rng.choice(_EDGE_U16) if rng.random() < 0.5 else rng.randrange(1 << 16)


def edge_u32(rng: random.Random) -> int:
    return rng.choice(_EDGE_U32) if rng.random() < 0.5 else rng.randrange(1 << 32)


def _flip(rng: random.Random, data: bytearray) -> None:
    at = rng.randrange(len(data))
    data[at] ^= 1 << rng.randrange(8)


def _set_byte(rng: random.Random, data: bytearray) -> None:
    data[rng.randrange(len(data))] = edge_u8(rng)


def _set_word(rng: random.Random, data: bytearray) -> None:
    if rng.random() < 0.5 and len(data) >= 2:
        at = rng.randrange(len(data) - 1)
        struct.pack_into(rng.choice(_U16_FORMATS), data, at, edge_u16(rng))
    elif len(data) >= 4:
        at = rng.randrange(len(data) - 3)
        struct.pack_into(rng.choice(_U32_FORMATS), data, at, edge_u32(rng))


def _insert(rng: random.Random, data: bytearray) -> None:
    at = rng.randrange(len(data) + 1)
    data[at:at] = rng.randbytes(rng.choice((1, 2, 4, rng.randrange(1, 64))))


def _delete(rng: random.Random, data: bytearray) -> None:
    at = rng.randrange(len(data))
    del data[at : at + rng.choice((1, 2, 4, rng.randrange(1, 32)))]


def _duplicate(rng: random.Random, data: bytearray) -> None:
    start = rng.randrange(len(data))
    chunk = data[start : start + rng.randrange(1, 64)]
    at = rng.randrange(len(data) + 1)
    data[at:at] = chunk


def _truncate(rng: random.Random, data: bytearray) -> None:
    del data[rng.randrange(len(data) + 1) :]


_MUTATIONS: tuple[Callable[[random.Random, bytearray], None], ...] = (
    _flip,
    _set_byte,
    _set_byte,
    _set_word,
    _set_word,
    _insert,
    _delete,
    _duplicate,
    _truncate,
)


def mutate(rng: random.Random, data: bytes, *, most: int = 4) -> bytes:
    """``data`` with one to ``most`` random mutations (empty data only grows)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, most)):
        if not out:
            out += rng.randbytes(rng.randrange(1, 16))
            continue
        rng.choice(_MUTATIONS)(rng, out)
    return bytes(out)


def splice(rng: random.Random, first: bytes, second: bytes) -> bytes:
    """A prefix of ``first`` followed by a suffix of ``second``."""
    return first[: rng.randrange(len(first) + 1)] + second[rng.randrange(len(second) + 1) :]


def fragments(rng: random.Random, data: bytes) -> list[bytes]:
    """``data`` cut as a stream might deliver it: whole, byte by byte, or in random pieces."""
    mode = rng.random()
    if mode < 0.25 or not data:
        return [data] if data else []
    if mode < 0.3 and len(data) <= 256:
        return [data[i : i + 1] for i in range(len(data))]
    pieces = []
    at = 0
    while at < len(data):
        size = rng.choice((1, 2, 3, 7, 8, 47, 48, 49, rng.randrange(1, 400)))
        pieces.append(data[at : at + size])
        at += size
    return pieces


def pick(rng: random.Random, options: Sequence[bytes]) -> bytes:
    return options[rng.randrange(len(options))]


__all__ = ["edge_u8", "edge_u16", "edge_u32", "fragments", "mutate", "pick", "splice"]
