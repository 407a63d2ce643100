"""The userspace USB/IP host controller on trio: list, import, submit, enumerate."""

from usbip_gadget._net import open_connection, parse_address
from usbip_gadget.client._enumerate import enumerate_device
from usbip_gadget.client._operations import DeviceSummary, describe, fetch_devlist, summarize
from usbip_gadget.client._remote import (
    ExportOffer,
    RemoteDevice,
    Urb,
    UrbResult,
    accept_exported_device,
    accept_offer,
    list_devices,
    open_remote_device,
    receive_offer,
    refuse_export,
    refuse_offer,
    unpack_iso_in,
)

__all__ = [
    "DeviceSummary",
    "ExportOffer",
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
    "open_remote_device",
    "parse_address",
    "receive_offer",
    "refuse_export",
    "refuse_offer",
    "summarize",
    "unpack_iso_in",
]
