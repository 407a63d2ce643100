"""Field tables: a fixed-layout structure described once, as rows in wire order.

A row is ``(spec name, Python attribute, struct code)``. The attribute names the dataclass
field holding the value, or is None for a value the codec computes (bLength,
bDescriptorType, counts, total lengths), which ``Layout.pack`` is given by spec name. The
struct format, the range checks of the dataclass's fields, pack, unpack and every field's
byte offset all come from the rows, so code that patches descriptor bytes can name the field
(``DeviceDescriptor.LAYOUT.offset_of("bNumConfigurations")``) instead of typing its offset.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from itertools import accumulate
from types import MappingProxyType
from typing import Any

from usbip_gadget.usb._common import check_int

Row = tuple[str, str | None, str]

# USB fields are little-endian and unsigned: the codes allowed, and the largest value of each.
_MAXIMA = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFF_FFFF}


class Layout:
    """The field table of one structure.

    ``rows`` as given; ``struct``, its ``format`` and ``size`` (little-endian); ``offsets``
    (spec name → byte offset, in wire order); ``attributes`` (the Python attributes in wire
    order, which is the order of the dataclass fields they fill); ``constants`` (values of
    computed fields that ``pack`` uses unless told otherwise).
    """

    __slots__ = (
        "_checks",
        "_sizes",
        "_sources",
        "_values",
        "attributes",
        "constants",
        "format",
        "offsets",
        "rows",
        "size",
        "struct",
    )

    def __init__(self, *rows: Row, constants: Mapping[str, int] | None = None) -> None:
        specs = [spec for spec, _, _ in rows]
        if len(set(specs)) != len(specs) or any(code not in _MAXIMA for _, _, code in rows):
            raise ValueError(f"malformed field table: {rows}")
        sizes = [struct.calcsize("<" + code) for _, _, code in rows]
        starts = list(accumulate(sizes, initial=0))[:-1]
        self.rows = rows
        self.format = "<" + "".join(code for _, _, code in rows)
        self.struct = struct.Struct(self.format)
        self.size = self.struct.size
        self.offsets: Mapping[str, int] = MappingProxyType(dict(zip(specs, starts, strict=True)))
        self.attributes = tuple(attr for _, attr, _ in rows if attr is not None)
        self.constants: Mapping[str, int] = MappingProxyType(dict(constants or {}))
        self._sizes = dict(zip(specs, sizes, strict=True))
        self._sources = tuple((attr is not None, attr or spec) for spec, attr, _ in rows)
        # The attribute fields alone: the others are skipped as pad bytes.
        kept = [code if attr else "x" * struct.calcsize("<" + code) for _, attr, code in rows]
        self._values = struct.Struct("<" + "".join(kept))
        self._checks = _checks(rows)

    @classmethod
    def descriptor(cls, dtype: int, *rows: Row) -> Layout:
        """A standard descriptor: bLength (its size) and bDescriptorType (``dtype``) first."""
        size = 2 + struct.calcsize("<" + "".join(code for _, _, code in rows))
        header: tuple[Row, ...] = (("bLength", None, "B"), ("bDescriptorType", None, "B"))
        return cls(*header, *rows, constants={"bLength": size, "bDescriptorType": dtype})

    def offset_of(self, spec: str) -> int:
        """The byte offset of field ``spec`` (its spec name); ``KeyError`` if there is none."""
        return self.offsets[spec]

    def size_of(self, spec: str) -> int:
        """The size in bytes of field ``spec``; ``KeyError`` if there is none."""
        return self._sizes[spec]

    def check(self, obj: object) -> None:
        """Raise ``LocalProtocolError`` naming the first attribute of ``obj`` that does not fit."""
        for attr, maximum in self._checks:
            value = getattr(obj, attr)
            # Exact ints in range pass here; anything else (an IntEnum, a bool, a str) is
            # left to check_int, which accepts it or words the error.
            if type(value) is not int or not 0 <= value <= maximum:
                check_int(attr, value, maximum)

    def pack(self, obj: object, /, **computed: int) -> bytes:
        """The bytes: attribute fields from ``obj``, the others from ``computed`` or constants."""
        given = {**self.constants, **computed}
        return self.struct.pack(
            *[getattr(obj, name) if own else given[name] for own, name in self._sources]
        )

    def unpack(self, data: bytes) -> dict[str, int]:
        """Every field at the start of ``data`` (which may be longer), by spec name."""
        return dict(zip(self.offsets, self.struct.unpack_from(data), strict=True))

    def values(self, data: bytes) -> tuple[int, ...]:
        """The attribute fields at the start of ``data``, in order.

        The positional arguments of a dataclass whose fields are exactly the attributes.
        """
        return self._values.unpack_from(data)

    def arguments(self, data: bytes) -> dict[str, Any]:
        """The attribute fields at the start of ``data``, as keyword arguments by attribute."""
        return dict(zip(self.attributes, self._values.unpack_from(data), strict=True))


def _checks(rows: tuple[Row, ...]) -> tuple[tuple[str, int], ...]:
    """(attribute, largest value) of each attribute field, one-byte fields first.

    Of several bad fields the error names the first one-byte field, whatever the wire order.
    """
    checks = [(attr, _MAXIMA[code]) for _, attr, code in rows if attr is not None]
    return tuple(sorted(checks, key=lambda check: check[1]))
