"""A run of descriptors as tokens: each standard structural one recognised, grouped under heads.

Interface, endpoint, IAD and configuration descriptors are recognised by type and size;
everything else stays raw. Grouping cuts the tokens at each head (an interface, an
endpoint...): what follows a head up to the next one belongs to it.
"""

from __future__ import annotations

from usbip_gadget._errors import DescriptorError
from usbip_gadget.usb._enums import DescriptorType
from usbip_gadget.usb._layouts import (
    AUDIO_ENDPOINT,
    CONFIGURATION,
    ENDPOINT,
    INTERFACE,
    INTERFACE_ASSOCIATION,
)
from usbip_gadget.usb._raw import RawDescriptor, split_descriptors

# (structural bDescriptorType or None for a raw descriptor, the descriptor's bytes)
Token = tuple[int | None, bytes]
Run = tuple[Token, list[Token]]

_SIZES: dict[int, tuple[int, ...]] = {
    DescriptorType.CONFIGURATION: (CONFIGURATION.size,),
    DescriptorType.INTERFACE: (INTERFACE.size,),
    DescriptorType.ENDPOINT: (ENDPOINT.size, AUDIO_ENDPOINT.size),
    DescriptorType.INTERFACE_ASSOCIATION: (INTERFACE_ASSOCIATION.size,),
}


def _kind(piece: bytes, *, lenient: bool) -> int | None:
    """The structural type of ``piece``, or None to keep it raw; strict mode checks sizes."""
    sizes = _SIZES.get(piece[1])
    if sizes is None:
        return None
    if len(piece) in sizes:
        return piece[1]
    if lenient:
        return None
    name = DescriptorType(piece[1]).name
    raise DescriptorError(f"{name} descriptor: bLength {len(piece)}, expected {sizes}")


def tokens(pieces: list[bytes], *, lenient: bool) -> list[Token]:
    """``pieces`` (whole descriptors) with their structural types."""
    return [(_kind(piece, lenient=lenient), piece) for piece in pieces]


def runs(items: list[Token], heads: set[int]) -> tuple[list[Token], list[Run]]:
    """Split ``items`` at each token whose kind is in ``heads``: (leading, [(head, rest)])."""
    leading: list[Token] = []
    found: list[Run] = []
    for token in items:
        if token[0] in heads:
            found.append((token, []))
        elif found:
            found[-1][1].append(token)
        else:
            leading.append(token)
    return leading, found


def raws(items: list[Token], where: str, *, lenient: bool) -> tuple[RawDescriptor, ...]:
    """Keep ``items`` as raw descriptors; a structural one here is an error unless lenient."""
    for kind, _piece in items:
        if kind is not None and not lenient:
            raise DescriptorError(f"unexpected {DescriptorType(kind).name} descriptor {where}")
    return tuple(RawDescriptor(piece[1], piece[2:]) for _kind, piece in items)


def single(data: bytes, dtype: DescriptorType) -> tuple[bytes, list[Token]]:
    """Split ``data`` strictly and check that it starts with a ``dtype`` descriptor."""
    items = tokens(split_descriptors(data), lenient=False)
    if not items or items[0][0] != dtype:
        raise DescriptorError(f"expected a {dtype.name} descriptor first")
    return items[0][1], items[1:]
