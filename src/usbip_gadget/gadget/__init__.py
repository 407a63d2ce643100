"""The device side: the gadget that replays a remote device to the host on this port.

One room per kernel interface — ``functionfs/`` (configfs + f_fs) and ``gadgetfs/``
(legacy/inode.c) — and beside them what both share: the backend protocol the bridge drives
(``GadgetBackend``, ``GadgetEndpoint``), the ep0 event type, the endpoint file, UDC discovery,
the lock on a gadget name, configfs trees, number remapping, and the choice of backend
(``plan_backend``, ``open_gadget``). The in-memory backend for tests lives in
``usbip_gadget.testing``.

May import the standard library, trio, ``usbip_gadget._errors``, ``_groups`` and ``usb``;
never ``protocol``, ``client``, ``server``, ``bridge`` or ``cli``. The layers above import
this package only, never its private modules or its two backends directly.
"""

from usbip_gadget._errors import (
    EndpointsExhausted,
    EndpointShutdown,
    FunctionFsUnsupported,
    GadgetFsUnsupported,
    NoBackend,
    TemplateError,
)
from usbip_gadget.gadget._backend import (
    GadgetBackend,
    GadgetEndpoint,
    PacketReader,
    QueuedWrite,
    one_read_at_a_time,
    runs,
    write_on_wait,
)
from usbip_gadget.gadget._choose import (
    Backend,
    BackendPlan,
    open_gadget,
    plan_backend,
    plan_json,
    render_plan,
)
from usbip_gadget.gadget._configfs import (
    GADGET_ROOT,
    ConfigfsGadget,
    configfs_error,
)
from usbip_gadget.gadget._configfs_remove import remove_gadget
from usbip_gadget.gadget._differences import Difference
from usbip_gadget.gadget._doctor import Board, Check, board_checks
from usbip_gadget.gadget._events import Ep0Event, Ep0EventType
from usbip_gadget.gadget._lock import DEFAULT_LOCK_DIR, LOCK_DIR_VARIABLE, gadget_lock
from usbip_gadget.gadget._remap import (
    Remap,
    endpoint_addresses,
    interface_numbers,
    string_indexes,
)
from usbip_gadget.gadget._template import (
    GadgetTemplate,
    TemplateFunction,
    gadget_up,
    load_template,
    template_description,
    template_names,
)
from usbip_gadget.gadget._udc import NO_UDC_HINT, choose_udc, list_udcs, udc_driver
from usbip_gadget.gadget.gadgetfs import KNOWN_ENDPOINT_FILES

__all__ = [
    "DEFAULT_LOCK_DIR",
    "GADGET_ROOT",
    "KNOWN_ENDPOINT_FILES",
    "LOCK_DIR_VARIABLE",
    "NO_UDC_HINT",
    "Backend",
    "BackendPlan",
    "Board",
    "Check",
    "ConfigfsGadget",
    "Difference",
    "EndpointShutdown",
    "EndpointsExhausted",
    "Ep0Event",
    "Ep0EventType",
    "FunctionFsUnsupported",
    "GadgetBackend",
    "GadgetEndpoint",
    "GadgetFsUnsupported",
    "GadgetTemplate",
    "NoBackend",
    "PacketReader",
    "QueuedWrite",
    "Remap",
    "TemplateError",
    "TemplateFunction",
    "board_checks",
    "choose_udc",
    "configfs_error",
    "endpoint_addresses",
    "gadget_lock",
    "gadget_up",
    "interface_numbers",
    "list_udcs",
    "load_template",
    "one_read_at_a_time",
    "open_gadget",
    "plan_backend",
    "plan_json",
    "remove_gadget",
    "render_plan",
    "runs",
    "string_indexes",
    "template_description",
    "template_names",
    "udc_driver",
    "write_on_wait",
]
