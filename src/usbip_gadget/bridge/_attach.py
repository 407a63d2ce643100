"""``attach``: import a remote device, plug a gadget replaying it, bridge until it ends.

The device is found by bus ID or by what it is (``DeviceMatch``); found by what it is, it is
found again wherever the server has it after a replug. When the remote side ends (the server
closes the connection, the device goes away) the gadget is unplugged at once, so the host
sees a clean unplug. With ``reconnect`` the device is imported again with backoff and
plugged again when it is back.

Each enumerated device goes through the device policy (``DeviceGate``) before any gadget is
built; a refused one ends ``attach`` with ``DeviceRefused``, reconnecting or not.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

import trio

from usbip_gadget._errors import (
    DeviceGone,
    ImportRefused,
    RemoteProtocolError,
    TransportError,
    UsbipGadgetError,
    UsbipTimeout,
)
from usbip_gadget._net import PLAIN, Transport
from usbip_gadget.bridge._bridge import DEFAULT_DEPTH, Bridge
from usbip_gadget.bridge._plans import EXACT
from usbip_gadget.bridge._policy import NO_RULES, DeviceGate, DevicePolicy
from usbip_gadget.bridge._pumps import Log
from usbip_gadget.client import (
    DEFAULT_ENUMERATION_TIMEOUT,
    DeviceMatch,
    RemoteDevice,
    enumerate_device,
    open_matching_device,
    open_redirected_device,
    redir_url,
)
from usbip_gadget.gadget import (
    Backend,
    GadgetBackend,
    choose_udc,
    gadget_lock,
    list_udcs,
    open_gadget,
)
from usbip_gadget.usb import DeviceSnapshot

FIRST_RETRY_S = 1.0
LAST_RETRY_S = 30.0
# What a reconnect can cure: the server or the device is away for a while.
RETRYABLE = (TransportError, UsbipTimeout, DeviceGone, ImportRefused, RemoteProtocolError)


@dataclass(frozen=True, slots=True)
class AttachOptions:
    """What ``attach`` bridges, where, and how."""

    host: str
    port: int
    device: DeviceMatch | None  # None only with ``redirect``: the usb-host's one device
    udc: str | None = None
    name: str = "usbip-gadget"
    depth: int = DEFAULT_DEPTH
    reconnect: bool = False
    timeout: float = 10.0
    backend: Backend = Backend.AUTO
    bulk_urbs: str = EXACT
    policy: DevicePolicy = NO_RULES
    allow_dfu: bool = False
    transport: Transport = PLAIN
    enumeration_timeout: float = DEFAULT_ENUMERATION_TIMEOUT
    redirect: bool = False  # host:port is a usbredir usb-host, not a USB/IP server


async def attach(options: AttachOptions, *, log: Log) -> None:
    """Bridge until the remote side ends (its error is raised) or, with reconnect, forever.

    The gadget name is locked first (``GadgetError`` if another process holds it)."""
    with gadget_lock(options.name):
        await _attach(options, log)


async def _attach(options: AttachOptions, log: Log) -> None:
    udc = choose_udc(options.udc, list_udcs())
    plug = Plug(
        udc, options.name, options.depth, options.timeout, options.backend, options.bulk_urbs,
        gate=DeviceGate(options.policy, pin=True), allow_dfu=options.allow_dfu,
        enumeration_timeout=options.enumeration_timeout,
    )  # fmt: skip
    await attach_to(options, plug, log)


async def attach_to(options: AttachOptions, plug: Plug, log: Log) -> None:
    """``attach`` on a chosen controller; one ``plug`` (and so one device gate) for the run."""
    delay = FIRST_RETRY_S
    while True:
        plugged = trio.Event()
        try:
            await _attach_once(options, plug, log, plugged)
        except RETRYABLE as exc:
            if not options.reconnect:
                raise
            if plugged.is_set():
                delay = FIRST_RETRY_S
            log(f"{exc.one_line()}; retrying in {delay:g} s")
            await trio.sleep(delay)
            delay = min(delay * 2, LAST_RETRY_S)


async def _attach_once(options: AttachOptions, plug: Plug, log: Log, plugged: trio.Event) -> None:
    host, port = options.host, options.port
    if options.redirect:
        redirected = open_redirected_device(host, port, options.device, timeout=options.timeout)
        async with redirected as remote:
            await plug_and_bridge(remote, plug, redir_url(host, port), log, plugged)
        return
    assert options.device is not None
    found = open_matching_device(
        host, port, options.device, timeout=options.timeout, transport=options.transport
    )
    async with found as (busid, remote):
        await plug_and_bridge(remote, plug, f"{busid} on {host}", log, plugged)


class GadgetOpener(Protocol):
    """Builds and plugs the gadget replaying a snapshot: ``open_gadget``, or a fake in tests."""

    def __call__(
        self, snapshot: DeviceSnapshot, backend: Backend, *, udc: str, name: str
    ) -> AbstractAsyncContextManager[GadgetBackend]: ...


@dataclass(frozen=True, slots=True)
class Plug:
    """Where and how a remote device is replayed, and which devices and requests may pass."""

    udc: str
    name: str = "usbip-gadget"
    depth: int = DEFAULT_DEPTH
    timeout: float = 10.0
    backend: Backend = Backend.AUTO
    bulk_urbs: str = EXACT
    gate: DeviceGate = field(default_factory=DeviceGate)
    allow_dfu: bool = False
    opener: GadgetOpener = open_gadget
    enumeration_timeout: float = DEFAULT_ENUMERATION_TIMEOUT


async def plug_and_bridge(
    remote: RemoteDevice, plug: Plug, origin: str, log: Log, plugged: trio.Event
) -> None:
    """Enumerate ``remote``, plug a gadget replaying it, and bridge until one side ends."""
    snapshot = await enumerate_device(
        remote, timeout=plug.timeout, deadline=plug.enumeration_timeout
    )
    hint = plug.gate.admit(snapshot, origin)  # before any gadget exists
    if hint is not None:
        log(hint)
    device = snapshot.device
    ident = f"{device.id_vendor:04x}:{device.id_product:04x}"
    config = snapshot.configurations[0]
    outcome = "stopped"
    try:
        gadget_cm = plug.opener(snapshot, plug.backend, udc=plug.udc, name=plug.name)
        async with gadget_cm as gadget:
            log(f"plugged {ident} ({origin}) into {plug.udc} ({gadget.name})")
            plugged.set()
            try:
                bridge = Bridge(
                    remote, gadget, config, depth=plug.depth, bulk_urbs=plug.bulk_urbs, log=log,
                    allow_dfu=plug.allow_dfu,
                )  # fmt: skip
                await bridge.run()
            except UsbipGadgetError as exc:
                outcome = exc.one_line()
                raise
    finally:
        if plugged.is_set():
            log(f"unplugged {ident} from {plug.udc}: {outcome}")


__all__ = [
    "RETRYABLE",
    "AttachOptions",
    "GadgetOpener",
    "Plug",
    "attach",
    "attach_to",
    "plug_and_bridge",
]
