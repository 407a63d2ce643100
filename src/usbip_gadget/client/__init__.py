"""The userspace USB/IP host controller on trio: list, import, submit, enumerate.

The op phase (``_handshake``) lists, imports or accepts a device; a ``RemoteDevice``
(``_device``) then carries its URBs, one reader and one writer task with a seqnum table of
the URBs in flight (``_urb_table``). Enumeration is a sequence of control transfers.
``_redir`` takes a device from a usbredir usb-host instead: the same ``RemoteDevice``,
talking through ``usbredir.GuestLink``.

This room imports the standard library, trio, ``usbip_gadget._errors``, ``_groups``,
``_net``, ``protocol``, ``usb`` and ``usbredir``; never ``gadget``, ``bridge``, ``server``
or ``cli``.
"""

from usbip_gadget._errors import AmbiguousMatch, NoMatchingDevice
from usbip_gadget._net import open_connection, parse_address
from usbip_gadget.client._device import RemoteDevice
from usbip_gadget.client._enumerate import DEFAULT_ENUMERATION_TIMEOUT, enumerate_device
from usbip_gadget.client._find import (
    DeviceMatch,
    open_matching_device,
    read_identity,
)
from usbip_gadget.client._handshake import (
    ExportOffer,
    accept_exported_device,
    accept_offer,
    list_devices,
    open_remote_device,
    receive_offer,
    refuse_export,
    refuse_offer,
)
from usbip_gadget.client._iso import unpack_iso_in
from usbip_gadget.client._operations import DeviceSummary, describe, fetch_devlist, summarize
from usbip_gadget.client._redir import (
    REDIR_SCHEME,
    open_redirected_device,
    parse_redir_url,
    redir_url,
)
from usbip_gadget.client._urb import Urb, UrbResult

__all__ = [
    "DEFAULT_ENUMERATION_TIMEOUT",
    "REDIR_SCHEME",
    "AmbiguousMatch",
    "DeviceMatch",
    "DeviceSummary",
    "ExportOffer",
    "NoMatchingDevice",
    "RemoteDevice",
    "Urb",
    "UrbResult",
    "accept_exported_device",
    "accept_offer",
    "describe",
    "enumerate_device",
    "fetch_devlist",
    "list_devices",
    "open_connection",
    "open_matching_device",
    "open_redirected_device",
    "open_remote_device",
    "parse_address",
    "parse_redir_url",
    "read_identity",
    "receive_offer",
    "redir_url",
    "refuse_export",
    "refuse_offer",
    "summarize",
    "unpack_iso_in",
]
