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
import ctypes
import errno
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TypeVar

import trio

from usbip_gadget._errors import EndpointsExhausted, FunctionFsUnsupported, GadgetError
from usbip_gadget._groups import collapse_single
from usbip_gadget.gadget._aio import Aio, AioRequest, PacketRing, open_aio
from usbip_gadget.gadget._backend import (
    EndpointShutdown,
    PacketReader,
    QueuedWrite,
    one_read_at_a_time,
    write_on_wait,
)
from usbip_gadget.gadget._blocking import ThreadedFile
from usbip_gadget.gadget._configfs import GADGET_ROOT, ConfigfsGadget
from usbip_gadget.gadget._ffs_blob import (
    FfsFlag,
    build_descriptors,
    build_strings,
    check_expressible,
    string_indexes,
)
from usbip_gadget.gadget._ffs_events import EVENT_SIZE, FfsEvent, parse_events
from usbip_gadget.gadget._remap import Remap
from usbip_gadget.usb import Configuration, DeviceSnapshot, EndpointDescriptor

MOUNT_ROOT = Path("/run/usbip-gadget")
# Not FUNCTIONFS_VIRTUAL_ADDR: with it the host is shown the remote's endpoint addresses while
# the controller answers on the ones usb_ep_autoconfig picked (f_fs restores the address only
# in the descriptors), which only works where the two happen to agree. Without it the host
# sees the controller's addresses, and endpoint requests are remapped.
FLAGS = FfsFlag.ALL_CTRL_RECIP | FfsFlag.CONFIG0_SETUP
_MNT_DETACH = 2
_EVENT_BATCH = 4  # f_fs keeps at most four events queued
_SHUTDOWN_ERRNOS = {errno.ESHUTDOWN, errno.ECONNRESET, errno.ENODEV}
_FUNCTIONFS_HINT = "is usb_f_fs loaded? (modprobe usb_f_fs)"

T = TypeVar("T")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(instance: str, target: Path) -> None:
    if _libc().mount(instance.encode(), bytes(target), b"functionfs", 0, None) != 0:
        code = ctypes.get_errno()
        raise GadgetError(
            f"cannot mount functionfs {instance} on {target}: {os.strerror(code)}",
            hint=_FUNCTIONFS_HINT,
        )


def _umount(target: Path) -> None:
    _libc().umount2(bytes(target), _MNT_DETACH)


async def _in_thread(fn: Callable[[], T]) -> T:
    """Run a blocking call on a kernel file in a worker thread.

    If the caller is cancelled the thread is abandoned; it returns once the kernel completes
    or fails its request (unbinding the UDC fails them all).
    """
    return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


class FfsEndpoint:
    """One endpoint file replaying a remote endpoint: FunctionFS's ``ep<N>``, or GadgetFS's
    files named after the controller's endpoints (both take the same I/O, halt included).

    With ``aio`` the file is non-blocking and transfers are AIO requests; without, they are
    blocking calls in worker threads whose results outlive a cancelled caller (``_blocking``).
    """

    def __init__(
        self, fd: int, descriptor: EndpointDescriptor, path: Path, aio: Aio | None = None
    ) -> None:
        self._fd = fd
        self._descriptor = descriptor
        self._path = path
        self._aio = aio
        self._threaded = ThreadedFile(fd) if aio is None else None

    @property
    def descriptor(self) -> EndpointDescriptor:
        return self._descriptor

    async def read(self, length: int) -> bytes:
        try:
            if self._aio is not None:
                return await self._aio.read(self._fd, length)
            assert self._threaded is not None
            return await self._threaded.read(length)
        except OSError as exc:
            raise self._error(exc) from None

    async def write(self, data: bytes) -> None:
        try:
            if self._aio is not None:
                written = await self._aio.write(self._fd, bytes(data))
            else:
                assert self._threaded is not None
                written = await self._threaded.write(bytes(data))
        except OSError as exc:
            raise self._error(exc) from None
        if written != len(data):
            raise GadgetError(f"{self._path}: wrote {written} of {len(data)} bytes")

    def queue_write(self, data: bytes) -> QueuedWrite:
        if self._aio is None:
            return write_on_wait(self, data)
        try:
            return _AioWrite(self._aio, self._aio.start_write(self._fd, bytes(data)), self)
        except OSError as exc:
            return _Failed(self._error(exc))

    def packet_reader(self, limit: int) -> AbstractAsyncContextManager[PacketReader]:
        if self._aio is None:
            return one_read_at_a_time(self)
        return self._ring(self._aio, max(1, limit))

    @asynccontextmanager
    async def _ring(self, aio: Aio, count: int) -> AsyncIterator[PacketReader]:
        packet = max(1, self._descriptor.max_packet_size)
        ring = aio.packet_ring(self._fd, packet, count)
        try:
            try:
                ring.start()
            except OSError as exc:
                raise self._error(exc) from None
            yield _RingReader(ring, self)
        finally:
            ring.close()

    async def halt(self) -> None:
        # f_fs halts an endpoint on I/O in the wrong direction and answers EBADMSG. It does
        # not wait for the host, so on a non-blocking file it needs no thread.
        is_in = bool(self._descriptor.b_endpoint_address & 0x80)
        wrong_way: Callable[[], object] = (
            (lambda: os.read(self._fd, 1)) if is_in else (lambda: os.write(self._fd, b"\0"))
        )
        try:
            if self._aio is not None:
                await trio.lowlevel.checkpoint()
                wrong_way()
            else:
                await _in_thread(wrong_way)
        except OSError as exc:
            if exc.errno == errno.EBADMSG:
                return
            raise self._error(exc, "cannot halt: ") from None
        raise GadgetError(f"{self._path}: the kernel did not halt the endpoint")

    def close(self) -> None:
        """Close the file (GadgetFS disables the endpoint when it is released, which waits
        for calls still blocked on it: they are interrupted first)."""
        if self._threaded is not None:
            self._threaded.interrupt()
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def _error(self, exc: OSError, doing: str = "") -> GadgetError:
        # EAGAIN: a non-blocking file whose endpoint is not enabled (f_fs would wait for it).
        if exc.errno in _SHUTDOWN_ERRNOS or exc.errno == errno.EAGAIN:
            return EndpointShutdown(f"{self._path}: endpoint disabled by the host")
        return GadgetError(f"{self._path}: {doing}{exc.strerror}")


class _AioWrite:
    """A write request submitted on an endpoint file (``FfsEndpoint.queue_write``)."""

    queued = True

    def __init__(self, aio: Aio, request: AioRequest, endpoint: FfsEndpoint) -> None:
        self._aio = aio
        self._request = request
        self._endpoint = endpoint

    async def wait(self) -> None:
        try:
            written = await self._aio.finish(self._request)
        except OSError as exc:
            raise self._endpoint._error(exc) from None
        length = self._request.iocb.aio_nbytes
        if written != length:
            raise GadgetError(f"{self._endpoint._path}: wrote {written} of {length} bytes")

    def cancel(self) -> None:
        self._aio.abandon(self._request)


class _Failed:
    """A write the kernel refused at once: waiting for it raises why."""

    queued = True

    def __init__(self, error: GadgetError) -> None:
        self._error = error

    async def wait(self) -> None:
        await trio.lowlevel.checkpoint()
        raise self._error

    def cancel(self) -> None:
        pass


class _RingReader:
    """A ``PacketReader`` over an AIO ``PacketRing``, with the endpoint's errors."""

    def __init__(self, ring: PacketRing, endpoint: FfsEndpoint) -> None:
        self._ring = ring
        self._endpoint = endpoint

    async def take(self) -> list[bytes]:
        try:
            return await self._ring.take()
        except OSError as exc:
            raise self._endpoint._error(exc) from None

    def discard(self) -> int:
        try:
            return self._ring.discard()
        except OSError as exc:
            raise self._endpoint._error(exc) from None


class FunctionFsGadget:
    """A plugged FunctionFS gadget (see ``open_functionfs_gadget``)."""

    name = "functionfs"

    def __init__(
        self, ep0: int, mount: Path, config: Configuration, endpoints: Sequence[FfsEndpoint]
    ) -> None:
        self._ep0 = ep0
        self._mount = mount
        self._endpoints = tuple(endpoints)
        self._ep0_remap = Remap.for_ep0_events(config, virtual_addr=False)
        self._setup_in = False
        self._setup_length = 0

    @property
    def endpoints(self) -> Sequence[FfsEndpoint]:
        return self._endpoints

    @property
    def ep0_remap(self) -> Remap:
        return self._ep0_remap

    async def events(self) -> list[FfsEvent]:
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
            await _in_thread(stall)
        except OSError as exc:
            if exc.errno != errno.EL2HLT:
                raise GadgetError(f"{self._mount}/ep0: cannot stall: {exc.strerror}") from None

    async def _ep0_io(self, fn: Callable[[], T]) -> T:
        # A data stage waits for the host even on a non-blocking ep0 (f_fs checks O_NONBLOCK
        # only when there are no events to read).
        try:
            return await _in_thread(fn)
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
        _mount(name, mount)
        fds: list[int] = []
        aio: Aio | None = None
        try:
            aio = open_aio()
            ep0 = _open(mount / "ep0", fds)
            _write_blob(ep0, blob, "descriptors", mount)
            _write_blob(ep0, strings, "strings", mount)
            flags = os.O_NONBLOCK if aio is not None else 0
            endpoints = [
                FfsEndpoint(_open(mount / f"ep{n}", fds, flags), ep, mount / f"ep{n}", aio)
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
            _umount(mount)
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


__all__ = ["MOUNT_ROOT", "FfsEndpoint", "FunctionFsGadget", "open_functionfs_gadget"]
