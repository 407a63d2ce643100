"""The USB/IP server: exports local USB devices to any USB/IP client, on trio and pyusb.

``serve`` listens and serves; ``Server`` handles connections (over TCP or any trio stream);
a ``DeviceSource`` provides the devices: ``PyusbSource`` (libusb-1.0) for real ones (the
in-memory ``FakeSource`` for tests is in ``usbip_gadget.testing``). ``serve_redirected``
offers the same devices over usbredir, one per connection (``_redir``).

The device side of USB/IP: may import the standard library, trio, pyusb, ``usbip_gadget._errors``,
``_groups``, ``_net``, ``protocol``, ``usb`` and ``usbredir``; never the host controller
(``client``), the gadget, the bridge or the command line.
"""

from usbip_gadget._errors import ExportError
from usbip_gadget.server._connect import connect
from usbip_gadget.server._options import ServeOptions
from usbip_gadget.server._pyusb import PyusbDevice, PyusbSource
from usbip_gadget.server._redir import RedirServer, serve_redirected
from usbip_gadget.server._select import HUB_CLASS, Selection, check_busid, parse_vid_pid
from usbip_gadget.server._server import DEFAULT_BIND, Server, device_name, serve
from usbip_gadget.server._source import DeviceSource, EndpointInfo, LocalDevice, Moved
from usbip_gadget.server._transfer import standard_request

__all__ = [
    "DEFAULT_BIND",
    "HUB_CLASS",
    "DeviceSource",
    "EndpointInfo",
    "ExportError",
    "LocalDevice",
    "Moved",
    "PyusbDevice",
    "PyusbSource",
    "RedirServer",
    "Selection",
    "ServeOptions",
    "Server",
    "check_busid",
    "connect",
    "device_name",
    "parse_vid_pid",
    "serve",
    "serve_redirected",
    "standard_request",
]
