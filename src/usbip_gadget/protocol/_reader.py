"""Sequential reads from a receive buffer, shared by the two phases' parsers."""

from __future__ import annotations

import struct
from typing import Any

_U32 = struct.Struct(">I")


class Short(Exception):
    """The buffer ends before the message does: the parser answers "need more data"."""


class Reader:
    """Sequential reads from a buffer; running out raises ``Short``."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if end > len(self._view):
            raise Short
        chunk = self._view[self.pos : end]
        self.pos = end
        return chunk

    def unpack(self, fmt: struct.Struct) -> tuple[Any, ...]:
        return fmt.unpack(self.take(fmt.size))

    def u32(self) -> int:
        (value,) = _U32.unpack(self.take(4))
        return int(value)
