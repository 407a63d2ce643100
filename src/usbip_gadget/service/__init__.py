"""The board's services: systemd units for ``attach``, ``serve`` and ``listen`` and their
installation (``usbip-gadget install-service``).

The units ship in ``units/`` with ``@PROGRAM@`` where the path of the ``usbip-gadget``
program goes; each reads its options from a config file in ``/etc/usbip-gadget/``.

This room imports the standard library and ``usbip_gadget._errors`` only.
"""

from usbip_gadget._errors import ServiceError
from usbip_gadget.service._install import (
    CONFIG_DIR,
    UNIT_DIR,
    UNITS,
    install_units,
    render_unit,
)

__all__ = ["CONFIG_DIR", "UNITS", "UNIT_DIR", "ServiceError", "install_units", "render_unit"]
