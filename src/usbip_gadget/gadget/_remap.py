"""Interface numbers, endpoint addresses and string indexes: remote ↔ local.

FunctionFS (drivers/usb/gadget/function/f_fs.c) renumbers what the remote device chose:

- the composite layer allocates interface numbers (``usb_interface_id``) and string ids, and
  ``__ffs_func_bind_do_nums`` writes them into the descriptors the host sees;
- ``usb_ep_autoconfig`` picks the hardware endpoints; the host sees their addresses unless
  ``FUNCTIONFS_VIRTUAL_ADDR`` restores the blob's;
- ``ffs_func_setup`` replaces the whole wIndex of a request it passes to user space: with the
  interface's index in the blob for interface recipients, and for endpoint recipients with the
  endpoint's 1-based index in the blob (or, with ``FUNCTIONFS_VIRTUAL_ADDR``, its blob address).

So there are two "local" numberings: the one in ep0 SETUP events (``for_ep0_events``) and the
one the host sees (``from_kernel``). A ``Remap`` holds one of them.

Not handled here: numbers inside class-specific descriptors (the CDC union and call-management
functional descriptors name interfaces, UAC descriptors name terminals) and the high byte of an
interface request's wIndex (entity ids of audio and video requests), which FunctionFS drops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from usbip_gadget._errors import GadgetError
from usbip_gadget.usb import (
    Configuration,
    DescriptorType,
    InterfaceAssociation,
    RequestType,
    SetupPacket,
)

Pairs = tuple[tuple[int, int], ...]

# Byte offsets of numbers to rewrite, by descriptor type: (offset, table) with table one of
# "interfaces", "endpoints", "strings". Offsets count from bLength.
_FIELDS: dict[int, tuple[tuple[int, str], ...]] = {
    DescriptorType.CONFIGURATION: ((6, "strings"),),
    DescriptorType.INTERFACE: ((2, "interfaces"), (8, "strings")),
    DescriptorType.INTERFACE_ASSOCIATION: ((2, "interfaces"), (7, "strings")),
    DescriptorType.ENDPOINT: ((2, "endpoints"),),
}


def _pairs(name: str, mapping: Mapping[int, int]) -> Pairs:
    pairs = tuple(sorted(mapping.items()))
    if any(not 0 <= n <= 0xFF for pair in pairs for n in pair):
        raise GadgetError(f"{name} remap: numbers must fit in a byte")
    if len({local for _, local in pairs}) != len(pairs):
        raise GadgetError(f"{name} remap: two remote numbers share one local number")
    return pairs


# -- the composite layer's numbering (blob order) -----------------------------------------


def interface_numbers(config: Configuration) -> dict[int, int]:
    """Remote bInterfaceNumber → blob interface number (0..n-1, in order of appearance)."""
    return {number: index for index, number in enumerate(config.interfaces())}


def endpoint_addresses(config: Configuration) -> tuple[int, ...]:
    """The endpoint addresses in blob order (FunctionFS endpoint files ep1, ep2... follow it)."""
    return tuple(dict.fromkeys(ep.b_endpoint_address for ep in config.endpoints()))


def string_indexes(config: Configuration) -> tuple[int, ...]:
    """The string indexes the blob refers to (iInterface, iFunction), in order of appearance."""
    found = (
        item.i_function if isinstance(item, InterfaceAssociation) else item.i_interface
        for item in config.body
    )
    return tuple(dict.fromkeys(index for index in found if index))


@dataclass(frozen=True, slots=True)
class Remap:
    """One-to-one maps remote → local of interfaces, endpoint addresses and string indexes.

    Numbers missing from a map are left as they are.
    """

    interfaces: Pairs = ()
    endpoints: Pairs = ()
    strings: Pairs = ()

    @classmethod
    def build(
        cls,
        *,
        interfaces: Mapping[int, int] | None = None,
        endpoints: Mapping[int, int] | None = None,
        strings: Mapping[int, int] | None = None,
    ) -> Remap:
        """A remap from remote → local mappings; ``GadgetError`` if one is not one-to-one."""
        return cls(
            _pairs("interface", interfaces or {}),
            _pairs("endpoint", endpoints or {}),
            _pairs("string", strings or {}),
        )

    @classmethod
    def from_kernel(
        cls,
        config: Configuration,
        *,
        interface_numbers: Sequence[int],
        endpoint_addresses: Sequence[int],
        strings: Mapping[int, int] | None = None,
    ) -> Remap:
        """The numbering the host sees, from what the kernel assigned to each blob position.

        ``interface_numbers[i]`` is the number of blob interface ``i``; ``endpoint_addresses[i]``
        the address of blob endpoint ``i`` (the file ``ep{i + 1}``).
        """
        return cls._positional(config, interface_numbers, endpoint_addresses, strings)

    @classmethod
    def for_ep0_events(
        cls,
        config: Configuration,
        *,
        virtual_addr: bool,
        strings: Mapping[int, int] | None = None,
    ) -> Remap:
        """The numbering of wIndex in FunctionFS SETUP events (see the module docstring)."""
        addresses = endpoint_addresses(config)
        local = addresses if virtual_addr else tuple(range(1, len(addresses) + 1))
        count = len(interface_numbers(config))
        return cls._positional(config, range(count), local, strings)

    @classmethod
    def _positional(
        cls,
        config: Configuration,
        interfaces: Sequence[int],
        endpoints: Sequence[int],
        strings: Mapping[int, int] | None,
    ) -> Remap:
        remote_interfaces = tuple(interface_numbers(config))
        remote_endpoints = endpoint_addresses(config)
        if len(interfaces) != len(remote_interfaces) or len(endpoints) != len(remote_endpoints):
            raise GadgetError("kernel numbers do not match the configuration's interfaces")
        return cls.build(
            interfaces=dict(zip(remote_interfaces, interfaces, strict=True)),
            endpoints=dict(zip(remote_endpoints, endpoints, strict=True)),
            strings=strings,
        )

    def inverse(self) -> Remap:
        """The remap local → remote."""
        return Remap(*(tuple(sorted((b, a) for a, b in table)) for table in self._tables()))

    def _tables(self) -> tuple[Pairs, Pairs, Pairs]:
        return self.interfaces, self.endpoints, self.strings

    def setup_to_remote(self, setup: SetupPacket) -> SetupPacket:
        """``setup`` with the low byte of wIndex of interface and endpoint requests remapped.

        Device and other-recipient requests come back unchanged (the same object).
        """
        if setup.recipient == RequestType.INTERFACE:
            table = self.interfaces
        elif setup.recipient == RequestType.ENDPOINT:
            table = self.endpoints
        else:
            return setup
        low = setup.w_index & 0xFF
        remote = {local: remote for remote, local in table}.get(low, low)
        if remote == low:
            return setup
        w_index = (setup.w_index & 0xFF00) | remote
        return SetupPacket(
            setup.bm_request_type, setup.b_request, setup.w_value, w_index, setup.w_length
        )

    def descriptor_to_local(self, raw: bytes) -> bytes:
        """A configuration (or any run of descriptors) with its standard numbers made local.

        Rewrites iConfiguration, bInterfaceNumber and iInterface, an IAD's bFirstInterface and
        iFunction, and bEndpointAddress. A truncated last descriptor is copied as it is; with
        nothing to change, ``raw`` itself comes back.
        """
        out = bytearray(raw)
        at = 0
        while at + 2 <= len(out) and out[at] >= 2:
            length = out[at]
            for offset, name in _FIELDS.get(out[at + 1], ()):
                if offset < length and at + offset < len(out):
                    out[at + offset] = self._local(name, out[at + offset])
            at += length
        return raw if out == raw else bytes(out)

    def _local(self, name: str, value: int) -> int:
        table: Pairs = getattr(self, name)
        return dict(table).get(value, value)
