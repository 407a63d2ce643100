"""Parsing configuration descriptors: strict for well-formed devices, lenient for short reads.

The bytes are split into descriptors, each standard structural descriptor (interface,
endpoint, IAD) is recognised by type and size, and the flat list is grouped into the tree of
``_config``: everything up to the next interface or IAD belongs to the item before it, and
inside an interface everything up to the next endpoint belongs to the descriptor before it.
"""

from __future__ import annotations

from usbip_gadget._errors import DescriptorError
from usbip_gadget.usb._config import (
    CONFIG_LAYOUT,
    ENDPOINT_LAYOUT,
    IAD_LAYOUT,
    INTERFACE_LAYOUT,
    Configuration,
    EndpointDescriptor,
    InterfaceAssociation,
    InterfaceDescriptor,
    RawDescriptor,
)
from usbip_gadget.usb._enums import DescriptorType

# (structural bDescriptorType or None for a raw descriptor, the descriptor's bytes)
_Token = tuple[int | None, bytes]
_Run = tuple[_Token, list[_Token]]

_SIZES: dict[int, tuple[int, ...]] = {
    DescriptorType.CONFIGURATION: (9,),
    DescriptorType.INTERFACE: (9,),
    DescriptorType.ENDPOINT: (7, 9),
    DescriptorType.INTERFACE_ASSOCIATION: (8,),
}


def config_total_length(header: bytes) -> int:
    """wTotalLength of a configuration, from (at least) its first 9 bytes.

    ``DescriptorError`` unless bLength is 9, bDescriptorType is CONFIGURATION and
    wTotalLength is at least 9.
    """
    if len(header) < CONFIG_LAYOUT.size:
        raise DescriptorError(f"configuration header: {len(header)} bytes, need 9")
    if header[0] != CONFIG_LAYOUT.size or header[1] != DescriptorType.CONFIGURATION:
        raise DescriptorError(
            f"configuration header: bLength {header[0]}, bDescriptorType {header[1]:#04x};"
            " expected 9, 0x02"
        )
    total = int.from_bytes(header[2:4], "little")
    if total < CONFIG_LAYOUT.size:
        raise DescriptorError(f"configuration header: wTotalLength {total} is below 9")
    return total


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


def _tokens(pieces: list[bytes], *, lenient: bool) -> list[_Token]:
    return [(_kind(piece, lenient=lenient), piece) for piece in pieces]


def _runs(tokens: list[_Token], heads: set[int]) -> tuple[list[_Token], list[_Run]]:
    """Split ``tokens`` at each token whose kind is in ``heads``: (leading, [(head, rest)])."""
    leading: list[_Token] = []
    runs: list[_Run] = []
    for token in tokens:
        if token[0] in heads:
            runs.append((token, []))
        elif runs:
            runs[-1][1].append(token)
        else:
            leading.append(token)
    return leading, runs


def _raws(tokens: list[_Token], where: str, *, lenient: bool) -> tuple[RawDescriptor, ...]:
    """Keep ``tokens`` as raw descriptors; a structural one here is an error unless lenient."""
    for kind, _piece in tokens:
        if kind is not None and not lenient:
            raise DescriptorError(f"unexpected {DescriptorType(kind).name} descriptor {where}")
    return tuple(RawDescriptor(piece[1], piece[2:]) for _kind, piece in tokens)


def _endpoint(head: bytes, rest: list[_Token], *, lenient: bool) -> EndpointDescriptor:
    _, _, address, attributes, max_packet, interval = ENDPOINT_LAYOUT.unpack_from(head)
    refresh, synch = (head[7], head[8]) if len(head) == 9 else (None, None)
    extra = _raws(rest, f"after endpoint {address:#04x}", lenient=lenient)
    return EndpointDescriptor(address, attributes, max_packet, interval, refresh, synch, extra)


def _interface(head: bytes, rest: list[_Token], *, lenient: bool) -> InterfaceDescriptor:
    _, _, number, alt, count, klass, sub, proto, index = INTERFACE_LAYOUT.unpack(head)
    leading, runs = _runs(rest, {DescriptorType.ENDPOINT})
    endpoints = tuple(_endpoint(ep[1], more, lenient=lenient) for ep, more in runs)
    if count != len(endpoints) and not lenient:
        raise DescriptorError(
            f"interface {number} alt {alt}: bNumEndpoints is {count}"
            f" but {len(endpoints)} endpoint descriptors follow"
        )
    extra = _raws(leading, f"in interface {number}", lenient=lenient)
    interface = InterfaceDescriptor(number, alt, klass, sub, proto, index, endpoints, extra)
    if not lenient:
        interface.hid_descriptor()  # a malformed HID descriptor raises here
    return interface


def _association(head: bytes, rest: list[_Token], *, lenient: bool) -> InterfaceAssociation:
    _, _, first, count, klass, sub, proto, index = IAD_LAYOUT.unpack(head)
    extra = _raws(rest, "after an interface association", lenient=lenient)
    return InterfaceAssociation(first, count, klass, sub, proto, index, extra)


def _body_item(run: _Run, *, lenient: bool) -> InterfaceAssociation | InterfaceDescriptor:
    (kind, head), rest = run
    if kind == DescriptorType.INTERFACE_ASSOCIATION:
        return _association(head, rest, lenient=lenient)
    return _interface(head, rest, lenient=lenient)


def parse_configuration(data: bytes, *, lenient: bool = False) -> Configuration:
    """Decode a whole configuration (the wTotalLength bytes GET_DESCRIPTOR returned).

    Strict mode checks that wTotalLength equals ``len(data)``, every bLength (at least 2,
    inside the data, the standard size for interface/endpoint/IAD descriptors), that
    bNumInterfaces and each bNumEndpoints match, that endpoints only follow interfaces, and
    that HID descriptors are well formed. Lenient mode, for devices that returned less than
    wTotalLength or miscount, stops at the last whole descriptor, ignores the counts and keeps
    misplaced or missized standard descriptors as raw ones. Both raise ``DescriptorError`` on
    a bad 9-byte header.
    """
    total = config_total_length(data)
    if total != len(data) and not lenient:
        raise DescriptorError(f"configuration: wTotalLength is {total} but {len(data)} bytes")
    pieces = split_descriptors(data[:total], lenient=lenient)
    leading, runs = _runs(
        _tokens(pieces[1:], lenient=lenient),
        {DescriptorType.INTERFACE, DescriptorType.INTERFACE_ASSOCIATION},
    )
    _, _, _, num_interfaces, value, index, attributes, power = CONFIG_LAYOUT.unpack_from(data)
    config = Configuration(
        value,
        index,
        attributes,
        power,
        extra=_raws(leading, "before the first interface", lenient=lenient),
        body=tuple(_body_item(run, lenient=lenient) for run in runs),
    )
    if num_interfaces != config.b_num_interfaces and not lenient:
        raise DescriptorError(
            f"configuration: bNumInterfaces is {num_interfaces}"
            f" but {config.b_num_interfaces} interfaces follow"
        )
    return config


def _single(data: bytes, dtype: DescriptorType) -> tuple[bytes, list[_Token]]:
    """Split ``data`` strictly and check that it starts with a ``dtype`` descriptor."""
    tokens = _tokens(split_descriptors(data), lenient=False)
    if not tokens or tokens[0][0] != dtype:
        raise DescriptorError(f"expected a {dtype.name} descriptor first")
    return tokens[0][1], tokens[1:]


def parse_endpoint(data: bytes) -> EndpointDescriptor:
    """An endpoint descriptor and the raw descriptors after it (strict)."""
    head, rest = _single(data, DescriptorType.ENDPOINT)
    return _endpoint(head, rest, lenient=False)


def parse_interface(data: bytes) -> InterfaceDescriptor:
    """An interface descriptor, its extra descriptors and its endpoints (strict)."""
    head, rest = _single(data, DescriptorType.INTERFACE)
    return _interface(head, rest, lenient=False)
