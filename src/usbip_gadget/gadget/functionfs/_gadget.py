"""The FunctionFS backend: a configfs gadget with one ``ffs`` function, plugged into a UDC.

Life cycle (Documentation/usb/functionfs.rst, drivers/usb/gadget/function/f_fs.c):
build the configfs tree with an ``ffs.<name>`` function, mount ``functionfs`` for it, write
the descriptors and strings blobs to ``ep0`` (the endpoint files ``ep1``... appear then),
open the endpoint files, and write the UDC name. Teardown runs in reverse: UDC first (which
completes every request in flight with ESHUTDOWN, releasing threads blocked on endpoint
files), then files, mount and configfs tree.

Endpoint files are ``ep1``... in the order of the remote's endpoints. ep0 can be polled, so
events are read with ``trio.lowlevel.wait_readable`` on a non-blocking descriptor. Endpoint
files cannot be polled but take native AIO requests (``_aio``), reaped by one task of the
gadget's own; where the kernel has no AIO they are blocking calls in worker threads, as the
data stages on ep0 always are (a data stage blocks until the host has moved the data). f_fs
stalls a SETUP when user space moves its data the wrong way (``read`` for an IN request,
``write`` for an OUT one) and halts a data endpoint the same way (``read`` on IN, ``write`` on
OUT), answering ``EBADMSG``.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import trio

from usbip_gadget._errors import EndpointsExhausted, FunctionFsUnsupported, GadgetError
from usbip_gadget._groups import collapse_single
from usbip_gadget.gadget._aio import Aio, open_aio
from usbip_gadget.gadget._configfs import GADGET_ROOT, ConfigfsGadget
from usbip_gadget.gadget._endpoint_file import EndpointFile
from usbip_gadget.gadget._events import Ep0Event
from usbip_gadget.gadget._kernel import MOUNT_ROOT, in_thread, mount_filesystem, unmount
from usbip_gadget.gadget._remap import Remap, string_indexes
from usbip_gadget.gadget.functionfs._blob import (
    FfsFlag,
    build_descriptors,
    build_strings,
    check_expressible,
)
from usbip_gadget.gadget.functionfs._events import EVENT_SIZE, parse_events
from usbip_gadget.usb import Configuration, DeviceSnapshot, EndpointDescriptor

# Not FUNCTIONFS_VIRTUAL_ADDR: with it the host is shown the remote's endpoint addresses while
# the controller answers on the ones usb_ep_autoconfig picked (f_fs restores the address only
# in the descriptors), which only works where the two happen to agree. Without it the host
# sees the controller's addresses, and endpoint requests are remapped.
FLAGS = FfsFlag.ALL_CTRL_RECIP | FfsFlag.CONFIG0_SETUP
_EVENT_BATCH = 4  # f_fs keeps at most four events queued
_FUNCTIONFS_HINT = "is usb_f_fs loaded? (modprobe usb_f_fs)"

T = TypeVar("T")


class FunctionFsGadget:
    """A plugged FunctionFS gadget (see ``open_functionfs_gadget``)."""

    name = "functionfs"

    def __init__(
        self, ep0: int, mount: Path, config: Configuration, endpoints: Sequence[EndpointFile]
    ) -> None:
        self._ep0 = ep0
        self._mount = mount
        self._endpoints = tuple(endpoints)
        self._ep0_remap = Remap.for_ep0_events(config, virtual_addr=False)
        self._setup_in = False
        self._setup_length = 0

    @property
    def endpoints(self) -> Sequence[EndpointFile]:
        return self._endpoints

    @property
    def ep0_remap(self) -> Remap:
        return self._ep0_remap

    async def events(self) -> list[Ep0Event]:
        while True:
            try:
                data = os.read(self._ep0, EVENT_SIZE * _EVENT_BATCH)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._ep0)
                continue
            except OSError as exc:
                raise GadgetError(f"{self._mount}/ep0: {exc.strerror}") from None
            events = parse_events(data)
            for event in events:
                if event.setup is not None:
                    self._setup_in, self._setup_length = event.setup.is_in, event.setup.w_length
            return events

    async def reply(self, data: bytes) -> None:
        await self._ep0_io(lambda: os.write(self._ep0, data[: self._setup_length]))

    async def receive(self) -> bytes:
        return await self._ep0_io(lambda: os.read(self._ep0, self._setup_length))

    async def stall(self) -> None:
        # f_fs stalls a SETUP whose data user space moves the wrong way (EL2HLT).
        stall: Callable[[], object] = (
            (lambda: os.read(self._ep0, 0))
            if self._setup_in
            else (lambda: os.write(self._ep0, b""))
        )
        try:
            await in_thread(stall)
        except OSError as exc:
            if exc.errno != errno.EL2HLT:
                raise GadgetError(f"{self._mount}/ep0: cannot stall: {exc.strerror}") from None

    async def _ep0_io(self, fn: Callable[[], T]) -> T:
        # A data stage waits for the host even on a non-blocking ep0 (f_fs checks O_NONBLOCK
        # only when there are no events to read).
        try:
            return await in_thread(fn)
        except OSError as exc:
            raise GadgetError(f"{self._mount}/ep0: {exc.strerror}") from None


@asynccontextmanager
async def open_functionfs_gadget(
    snapshot: DeviceSnapshot,
    *,
    udc: str,
    name: str = "usbip-gadget",
    config_index: int = 0,
    root: Path = GADGET_ROOT,
    mount_root: Path = MOUNT_ROOT,
) -> AsyncIterator[FunctionFsGadget]:
    """Build, mount and plug a gadget replaying ``snapshot``; unplug and remove it on exit.

    ``FunctionFsUnsupported`` (one reason per problem) if FunctionFS cannot express the
    configuration.
    """
    config = snapshot.configurations[config_index]
    reasons = check_expressible(config)
    if reasons:
        raise FunctionFsUnsupported(reasons)
    strings, string_map = build_strings(snapshot.strings, string_indexes(config))
    blob = build_descriptors(config, speed=snapshot.speed, flags=FLAGS, strings=string_map)
    mount = mount_root / name
    with ConfigfsGadget(snapshot, name, root=root, replace=True) as gadget:
        gadget.add_function("ffs", name, config.b_configuration_value)
        mount.mkdir(parents=True, exist_ok=True)
        code = mount_filesystem(name, mount, "functionfs")
        if code:
            raise GadgetError(
                f"cannot mount functionfs {name} on {mount}: {os.strerror(code)}",
                hint=_FUNCTIONFS_HINT,
            )
        fds: list[int] = []
        aio: Aio | None = None
        try:
            aio = open_aio()
            ep0 = _open(mount / "ep0", fds)
            _write_blob(ep0, blob, "descriptors", mount)
            _write_blob(ep0, strings, "strings", mount)
            flags = os.O_NONBLOCK if aio is not None else 0
            endpoints = [
                EndpointFile(_open(mount / f"ep{n}", fds, flags), ep, mount / f"ep{n}", aio)
                for n, ep in enumerate(_unique_endpoints(config), start=1)
            ]
            os.set_blocking(ep0, False)
            try:
                gadget.bind(udc)
            except EndpointsExhausted as exc:
                raise EndpointsExhausted(
                    f"{udc} cannot give this device its {_endpoint_needs(config)}",
                    hint="a controller with more endpoints, or a device with fewer",
                ) from exc
            try:
                with collapse_single():
                    async with trio.open_nursery() as nursery:
                        if aio is not None:
                            nursery.start_soon(aio.run)
                        yield FunctionFsGadget(ep0, mount, config, endpoints)
                        nursery.cancel_scope.cancel()
            finally:
                gadget.unbind()
        finally:
            for fd in fds:
                os.close(fd)
            if aio is not None:
                aio.close()
            unmount(mount)
            _remove_dir(mount)


def _endpoint_needs(config: Configuration) -> str:
    """ "3 endpoints (2 bulk IN, 1 interrupt IN)"."""
    kinds = Counter(
        f"{ep.transfer_type.name.lower()} {'IN' if ep.is_in else 'OUT'}"
        for ep in _unique_endpoints(config)
    )
    total = sum(kinds.values())
    listed = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
    return f"{total} endpoint{'s' if total != 1 else ''} ({listed})"


def _unique_endpoints(config: Configuration) -> list[EndpointDescriptor]:
    seen: dict[int, EndpointDescriptor] = {}
    for ep in config.endpoints():
        seen.setdefault(ep.b_endpoint_address, ep)
    return list(seen.values())


def _open(path: Path, fds: list[int], flags: int = 0) -> int:
    try:
        fd = os.open(path, os.O_RDWR | flags)
    except OSError as exc:
        raise GadgetError(f"cannot open {path}: {exc.strerror}", hint=_FUNCTIONFS_HINT) from None
    fds.append(fd)
    return fd


def _write_blob(ep0: int, blob: bytes, what: str, mount: Path) -> None:
    try:
        os.write(ep0, blob)
    except OSError as exc:
        raise GadgetError(
            f"FunctionFS refused the {what} ({mount}/ep0: {exc.strerror})",
            hint="the kernel may be too old for this device's descriptors",
        ) from None


def _remove_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # busy after a lazy unmount, or not ours to remove
        path.rmdir()


__all__ = ["MOUNT_ROOT", "EndpointFile", "FunctionFsGadget", "open_functionfs_gadget"]
