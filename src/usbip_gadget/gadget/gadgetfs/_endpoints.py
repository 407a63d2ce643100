"""The controller's endpoint files under GadgetFS, and which remote endpoint goes in which.

Endpoints live in files named after the controller's endpoints (``ep1in-bulk``, ``ep-aout``
on dummy_hcd; ``ep1in``, ``ep1out`` on dwc2). A file named with a number carries that endpoint
number on controllers that route by hardware number (dwc2); a generic file (``ep-aout``) takes
the number in the descriptor written to it (the controller routes by descriptor). So the
remote's endpoint addresses are kept whenever a file with the same number, or a generic one,
can carry the endpoint; otherwise the endpoint moves to a free number, which the host sees.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from usbip_gadget._errors import GadgetFsUnsupported
from usbip_gadget.usb import Configuration, EndpointDescriptor, TransferType

NO_ISOCHRONOUS = frozenset({"dummy_udc"})  # controller drivers without isochronous transfers

# The endpoint files a controller driver offers GadgetFS, for planning before plugging.
_DUMMY_UDC_FILES = (
    "ep1in-bulk", "ep2out-bulk", "ep5in-int", "ep6in-bulk", "ep7out-bulk", "ep10in-int",
    "ep11in-bulk", "ep12out-bulk", "ep15in-int", "ep1out-bulk", "ep2in-bulk",
    "ep-aout", "ep-bin", "ep-cout", "ep-dout", "ep-ein", "ep-fout", "ep-gin", "ep-hout",
    "ep-iout", "ep-jin", "ep-kout", "ep-lin", "ep-mout",
)  # fmt: skip
KNOWN_ENDPOINT_FILES = {"dummy_udc": _DUMMY_UDC_FILES}

_TYPES_BY_SUFFIX = {
    "bulk": frozenset({TransferType.BULK, TransferType.INTERRUPT}),  # dummy: "bulk is ok"
    "int": frozenset({TransferType.INTERRUPT}),
    "iso": frozenset({TransferType.ISOCHRONOUS}),
    None: frozenset({TransferType.BULK, TransferType.INTERRUPT, TransferType.ISOCHRONOUS}),
}
_FILE_NAME = re.compile(
    r"ep(?P<number>\d+)?(?:-[a-z])?(?P<dir>in|out)?(?:-(?P<kind>bulk|int|iso))?"
)


@dataclass(frozen=True, slots=True)
class ControllerEndpoint:
    """One of the controller's endpoints, as its GadgetFS file names it."""

    name: str
    number: int | None  # None: a generic endpoint that takes the descriptor's number
    is_in: bool | None  # None: either direction
    types: frozenset[TransferType]

    @classmethod
    def parse(cls, name: str) -> ControllerEndpoint | None:
        """The endpoint a file name describes; None for ep0's file and anything else."""
        match = _FILE_NAME.fullmatch(name)
        if match is None or name == "ep":
            return None
        number = int(match["number"]) if match["number"] else None
        if number == 0 or (number is not None and number > 15):
            return None
        direction = match["dir"]
        is_in = None if direction is None else direction == "in"
        return cls(name, number, is_in, _TYPES_BY_SUFFIX[match["kind"]])

    def can_carry(self, ep: EndpointDescriptor) -> bool:
        direction_ok = self.is_in is None or self.is_in == ep.is_in
        return direction_ok and ep.transfer_type in self.types


@dataclass(frozen=True, slots=True)
class EndpointSlot:
    """Where a remote endpoint goes: its file, and the address the host sees."""

    remote: int
    local: int
    file: str


def remote_endpoints(config: Configuration) -> list[EndpointDescriptor]:
    """Each endpoint address of every alternate setting once, the first descriptor of it."""
    seen: dict[int, EndpointDescriptor] = {}
    for ep in config.endpoints():
        seen.setdefault(ep.b_endpoint_address, ep)
    return list(seen.values())


def map_endpoints(
    config: Configuration, file_names: Sequence[str], *, isochronous: bool = True
) -> dict[int, EndpointSlot]:
    """Remote endpoint address → the file and local address it gets.

    ``isochronous`` is False for controllers that carry no isochronous transfers
    (dummy_hcd). ``GadgetFsUnsupported`` names each endpoint no free file can carry.
    """
    files = [f for f in map(ControllerEndpoint.parse, sorted(file_names, key=_natural)) if f]
    wanted = remote_endpoints(config)
    if not isochronous:
        iso = [ep for ep in wanted if ep.transfer_type == TransferType.ISOCHRONOUS]
        if iso:
            raise GadgetFsUnsupported(
                [f"endpoint 0x{ep.b_endpoint_address:02x} is isochronous and this controller "
                 "carries no isochronous transfers" for ep in iso]
            )  # fmt: skip
    taken: set[str] = set()
    slots: dict[int, EndpointSlot] = {}

    def place(ep: EndpointDescriptor, fits: Fit) -> None:
        for file in files:
            if file.name in taken or not file.can_carry(ep):
                continue
            local = fits(file)
            if local is None or local in used_locals(ep.b_endpoint_address):
                continue
            taken.add(file.name)
            slots[ep.b_endpoint_address] = EndpointSlot(ep.b_endpoint_address, local, file.name)
            return

    def used_locals(placing: int) -> set[int]:
        # The remote's own addresses stay reserved for the endpoints that own them.
        others = {
            e.b_endpoint_address
            for e in wanted
            if e.b_endpoint_address not in slots and e.b_endpoint_address != placing
        }
        return {slot.local for slot in slots.values()} | others

    # 1. A file with the endpoint's own number; 2. a generic file that takes any number;
    # 3. any free file, at its own number: the host then sees another address.
    for ep in wanted:
        place(ep, _own_number(ep))
    for ep in wanted:
        if ep.b_endpoint_address not in slots:
            place(ep, _any_number(ep))
    for ep in wanted:
        if ep.b_endpoint_address not in slots:
            place(ep, _file_number(ep))
    missing = [ep for ep in wanted if ep.b_endpoint_address not in slots]
    if missing:
        raise GadgetFsUnsupported(
            [
                f"no free controller endpoint can carry endpoint 0x{ep.b_endpoint_address:02x} "
                f"({_kind(ep)}) (the controller has {', '.join(f.name for f in files) or 'none'})"
                for ep in missing
            ]
        )
    return {address: slots[address] for address in (ep.b_endpoint_address for ep in wanted)}


Fit = Callable[[ControllerEndpoint], int | None]  # the address a file gives, or None if it cannot


def _own_number(ep: EndpointDescriptor) -> Fit:
    def fits(file: ControllerEndpoint) -> int | None:
        return ep.b_endpoint_address if file.number == ep.number else None

    return fits


def _any_number(ep: EndpointDescriptor) -> Fit:
    def fits(file: ControllerEndpoint) -> int | None:
        return ep.b_endpoint_address if file.number is None else None

    return fits


def _file_number(ep: EndpointDescriptor) -> Fit:
    def fits(file: ControllerEndpoint) -> int | None:
        return (ep.b_endpoint_address & 0x80) | file.number if file.number else None

    return fits


def _natural(name: str) -> tuple[object, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _kind(ep: EndpointDescriptor) -> str:
    return f"{ep.transfer_type.name.lower()} {'IN' if ep.is_in else 'OUT'}"


def same_endpoint_addresses(config: Configuration) -> dict[int, EndpointSlot]:
    """Slots that keep every address, for planning where the controller is not known."""
    return {
        ep.b_endpoint_address: EndpointSlot(ep.b_endpoint_address, ep.b_endpoint_address, "")
        for ep in remote_endpoints(config)
    }
