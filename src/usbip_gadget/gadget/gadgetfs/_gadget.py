"""The GadgetFS backend: the remote's descriptors served as written (legacy/inode.c).

Life cycle: mount ``gadgetfs`` (one per system; mounting loads the module), open its ep0 file
(named after the controller: ``dummy_udc``, ``20980000.usb``), and write the descriptors
(``_gadgetfs_layout``): that one write binds the first free controller and connects. The
endpoint files then appear, named after the controller's endpoints. Closing ep0 unplugs.

ep0 gives 12-byte events: CONNECT (on the first SETUP), DISCONNECT (unplug or bus reset),
SUSPEND, and SETUP for every request the kernel does not answer itself: strings, class,
vendor and interface requests, SET_INTERFACE, and SET_CONFIGURATION, which the kernel has
accepted but whose status stage waits for user space. The bridge sees the same events as
from FunctionFS:

- SET_CONFIGURATION → DISABLE (if configured), then the endpoint files of every interface's
  alternate setting 0 are opened and configured, then ENABLE; the status stage is sent
  when the bridge asks for the next events, after it configured the remote device;
- SET_INTERFACE → SUSPEND (the pumps stop), the SETUP itself (the bridge applies it on the
  remote device, then acknowledges it: the interface's endpoint files are switched to the
  new setting first), then RESUME;
- DISCONNECT → DISABLE; the endpoint files are closed once the pumps have stopped.

GadgetFS has no resume event, so SUSPEND from the bus is not passed on: the remote device
is not suspended, and its read-ahead stays queued.

A SETUP is answered on ep0: ``write`` sends IN data, ``read`` of length 0 acknowledges an OUT
request without data, ``read`` of wLength collects OUT data (polled: GadgetFS reports it by
no event), and I/O the wrong way stalls (EL2HLT). EIDRM means the host replaced the request.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from usbip_gadget._errors import GadgetError
from usbip_gadget._groups import collapse_single
from usbip_gadget.gadget._blocking import Outstanding, install_interrupt_handler, libc_read
from usbip_gadget.gadget._endpoint_file import EndpointFile
from usbip_gadget.gadget._events import Ep0Event, Ep0EventType
from usbip_gadget.gadget._kernel import MOUNT_ROOT, SHUTDOWN_ERRNOS, mount_filesystem, unmount
from usbip_gadget.gadget._remap import Remap
from usbip_gadget.gadget._udc import SYSFS_CLASS_UDC, list_udcs, udc_driver, udc_is_free
from usbip_gadget.gadget.gadgetfs._endpoints import (
    NO_ISOCHRONOUS,
    map_endpoints,
    same_endpoint_addresses,
)
from usbip_gadget.gadget.gadgetfs._layout import GadgetFsLayout, gadgetfs_layout
from usbip_gadget.usb import (
    Configuration,
    DeviceSnapshot,
    EndpointDescriptor,
    InterfaceDescriptor,
    Request,
    RequestType,
    SetupPacket,
)

_EVENT = struct.Struct("<8sI")  # union {setup; speed}, type (struct usb_gadgetfs_event)
_EVENT_BATCH = 5  # GadgetFS queues at most five events
_CONNECT, _DISCONNECT, _SETUP, _SUSPEND = 1, 2, 3, 4
_OPEN_RETRY_S = 0.01
_OPEN_PATIENCE_S = 2.0  # a closed endpoint file is released once its last request is reaped
OUT_DATA_PATIENCE_S = 5.0  # the host's own control timeout
_HINT = "is gadgetfs available? (modprobe gadgetfs)"


class HostGone(GadgetError):
    """The host reset or left while an endpoint was being configured."""


def gadgetfs_mounts(proc_mounts: Path = Path("/proc/mounts")) -> list[Path]:
    """Where gadgetfs is mounted (every mount shows the one system-wide instance)."""
    try:
        lines = proc_mounts.read_text().splitlines()
    except OSError:
        return []
    return [Path(line.split()[1]) for line in lines if line.split()[2:3] == ["gadgetfs"]]


@contextlib.contextmanager
def _mounted(mount_root: Path) -> Iterator[Path]:
    existing = gadgetfs_mounts()
    if existing:
        yield existing[0]
        return
    target = mount_root / "gadgetfs"
    target.mkdir(parents=True, exist_ok=True)
    code = mount_filesystem("gadgetfs", target, "gadgetfs")
    if code:
        with contextlib.suppress(OSError):
            target.rmdir()
        why = "no free USB device controller" if code == errno.ENODEV else os.strerror(code)
        raise GadgetError(f"cannot mount gadgetfs on {target}: {why}", hint=_HINT)
    try:
        yield target
    finally:
        unmount(target)
        with contextlib.suppress(OSError):
            target.rmdir()


def _ep0_name(mount: Path) -> str:
    names = [p.name for p in mount.iterdir() if not p.name.startswith("ep")]
    if len(names) != 1:
        raise GadgetError(f"{mount}: expected one controller file, found {names or 'none'}")
    return names[0]


@dataclass(slots=True)
class _Event:
    """One ep0 event; an OUT request's data (or its loss) travels with it."""

    setup_bytes: bytes  # for CONNECT, the union holds the speed instead
    kind: int
    data: bytes | None = None
    lost: bool = False


class GadgetFsGadget:
    """A plugged GadgetFS gadget (see ``open_gadgetfs_gadget``)."""

    name = "gadgetfs"

    def __init__(
        self,
        ep0: int,
        mount: Path,
        config: Configuration,
        layout: GadgetFsLayout,
    ) -> None:
        self._ep0 = ep0
        self._mount = mount
        self._config = config
        self._layout = layout
        self._open: dict[int, EndpointFile] = {}  # remote address → open endpoint
        self._alts: dict[int, int] = {}  # interface → alternate setting in use
        self._setup: SetupPacket | None = None
        self._out_data: bytes | None = None
        self._stale = False
        self._backlog: list[_Event] = []
        self._nursery: trio.Nursery | None = None
        self._prefetch: trio.CancelScope | None = None
        self._prefetched = trio.Event()
        self._then: list[Callable[[], Awaitable[list[Ep0Event]]]] = []
        self._ep0_remap = Remap.build(
            endpoints={a: s.local for a, s in layout.slots.items() if a != s.local}
        )

    @property
    def endpoints(self) -> Sequence[EndpointFile]:
        return tuple(self._open.values())

    @property
    def ep0_remap(self) -> Remap:
        return self._ep0_remap

    # ------------------------------------------------------------------ events

    async def events(self) -> list[Ep0Event]:
        await self._stop_prefetch()
        while self._then:
            follow_up = await self._then.pop(0)()
            if follow_up:
                return follow_up
        while True:
            batch = await self._read_events()
            for at, event in enumerate(batch):
                translated = await self._translate(event)
                if translated:
                    # The rest of the batch (a reset's CONNECT and the SETUP after it, say)
                    # comes next time, after the bridge has handled these.
                    self._backlog = batch[at + 1 :] + self._backlog
                    if self._out_data is not None and not self._backlog:
                        # ep0 is out of any SETUP: nothing read is waiting for an answer.
                        await self._start_prefetch()
                    return translated

    # While the bridge forwards an OUT request with data, ep0 is out of its SETUP state and
    # the host may already send more: they are read (with their data) meanwhile, as GadgetFS
    # keeps only the newest unread SETUP. Reading stops at a request that needs an answer.

    def run_prefetch_in(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    async def _start_prefetch(self) -> None:
        if self._nursery is not None:
            await self._nursery.start(self._prefetch_loop)

    async def _stop_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch.cancel()
            await self._prefetched.wait()
            self._prefetch = None

    async def _prefetch_loop(self, *, task_status: trio.TaskStatus[None]) -> None:
        done = self._prefetched = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._prefetch = scope
                task_status.started()
                while True:
                    batch = await self._read_events(backlog=False)  # cancelled only waiting
                    with trio.CancelScope(shield=True):
                        await self._complete_out_data(batch[-1])
                    self._backlog.extend(batch)
                    last = batch[-1]
                    if last.kind == _SETUP and not (last.data is not None or last.lost):
                        return  # ep0 is in that request's SETUP until the bridge answers
        finally:
            done.set()

    async def _complete_out_data(self, event: _Event) -> None:
        """An OUT request's data, if its early read found none yet."""
        if event.kind != _SETUP or event.data is not None or event.lost:
            return
        setup = SetupPacket.parse(event.setup_bytes)
        if setup.is_in or not setup.w_length:
            return
        try:
            event.data = await self._collect_out_data(setup.w_length)
        except OSError:
            event.lost = True

    def claim_requests(self) -> None:
        """Read ep0 once, at once: until its first read GadgetFS answers SET_CONFIGURATION
        itself and stalls string and class requests. Events read now are kept."""
        try:
            data = os.read(self._ep0, _EVENT.size * _EVENT_BATCH)
        except OSError:
            return
        self._backlog = self._parse(data[: len(data) - len(data) % _EVENT.size])

    def _parse(self, data: bytes) -> list[_Event]:
        events = [_Event(*_EVENT.unpack_from(data, at)) for at in range(0, len(data), _EVENT.size)]
        if events:
            self._early_out_data(events[-1])
        return events

    async def _read_events(self, *, backlog: bool = True) -> list[_Event]:
        if backlog and self._backlog:
            events, self._backlog = self._backlog, []
            await trio.lowlevel.checkpoint()
            return events
        while True:
            try:
                data = os.read(self._ep0, _EVENT.size * _EVENT_BATCH)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._ep0)
                continue
            except OSError as exc:
                # EIDRM: a SETUP was replaced by the next one. EL2HLT: that next one was an
                # IN request whose event was still queued (in a SETUP, ep0 reads are its data
                # stage, and reading an IN request's data stalls it): the host saw a stall,
                # so its event, read next, is stale.
                if exc.errno == errno.EL2HLT:
                    self._stale = True
                if exc.errno in (errno.EIDRM, errno.EL2HLT):
                    continue
                raise GadgetError(f"{self._mount}/ep0: {exc.strerror}") from None
            if len(data) % _EVENT.size:
                # The data stage of an OUT request whose event is still queued (ep0 was in
                # its SETUP): the request is over for the host; skip its event.
                self._stale = True
                continue
            return self._parse(data)

    def _early_out_data(self, event: _Event) -> None:
        """An OUT request's data, read right after its event: GadgetFS has the controller
        take it (and finish the request) as soon as the host sends it, and the host's next
        request makes it unreadable."""
        if event.kind != _SETUP:
            return
        setup = SetupPacket.parse(event.setup_bytes)
        if not setup.is_in and setup.w_length:
            try:
                event.data = os.read(self._ep0, setup.w_length)
            except BlockingIOError:
                pass  # not sent yet: a blocking read waits for it (_complete_out_data)
            except OSError:
                # EIDRM: the host went on, this request is lost and ep0 is in the next one's
                # SETUP, whose event cannot be read yet. EIO: its data stage failed. Either
                # way it is dropped without touching ep0 again.
                event.lost = True

    async def _translate(self, event: _Event) -> list[Ep0Event]:
        setup_bytes, kind = event.setup_bytes, event.kind
        self._out_data = None
        if kind in (_CONNECT, _DISCONNECT):
            self._stale = False  # both purge GadgetFS's event queue
        if kind == _DISCONNECT:
            self._setup = None
            return self._disable(then=None)
        if kind != _SETUP:
            return []  # CONNECT needs nothing; SUSPEND has no matching resume here
        setup = SetupPacket.parse(setup_bytes)
        if event.lost:
            return []
        if self._stale:
            self._stale = False
            self._abandon(setup)  # stalled already (see _read_events); end its SETUP again
            return []
        self._setup = setup
        if not setup.is_in and setup.w_length:
            # GadgetFS takes OUT data as soon as the host sends it, and the host goes on to
            # its next request without waiting for user space: collect the data at once.
            await self._complete_out_data(event)
            if event.data is None:
                return []  # the host moved on before the data was read
            self._out_data = event.data
        if (setup.bm_request_type, setup.b_request) == (0, Request.SET_CONFIGURATION):
            return await self._set_configuration(setup.w_value & 0xFF)
        if (setup.bm_request_type, setup.b_request) == (
            RequestType.INTERFACE,
            Request.SET_INTERFACE,
        ) and self._alts:
            self._then.append(self._resume)
            return [Ep0Event(Ep0EventType.SUSPEND), Ep0Event(Ep0EventType.SETUP, setup)]
        return [Ep0Event(Ep0EventType.SETUP, setup)]

    def _disable(self, then: Callable[[], Awaitable[list[Ep0Event]]] | None) -> list[Ep0Event]:
        if not self._alts:
            return []
        self._then.append(self._close_all)
        if then is not None:
            self._then.append(then)
        return [Ep0Event(Ep0EventType.DISABLE)]

    async def _close_all(self) -> list[Ep0Event]:
        await trio.lowlevel.checkpoint()
        self.close_endpoints()
        self._alts.clear()
        return []

    async def _set_configuration(self, value: int) -> list[Ep0Event]:
        async def configure() -> list[Ep0Event]:
            if value == 0:
                self._ack()
                return []
            try:
                for number, alts in self._config.interfaces().items():
                    await self._open_setting(number, alts[0])
            except HostGone:
                # Reset or unplugged meanwhile: no acknowledgement; DISCONNECT comes next.
                self.close_endpoints()
                self._alts.clear()
                return []
            self._then.append(self._ack_later)
            return [Ep0Event(Ep0EventType.ENABLE)]

        disabled = self._disable(then=configure)
        return disabled or await configure()

    async def _ack_later(self) -> list[Ep0Event]:
        await trio.lowlevel.checkpoint()
        self._ack()
        return []

    async def _resume(self) -> list[Ep0Event]:
        await trio.lowlevel.checkpoint()
        return [Ep0Event(Ep0EventType.RESUME)] if self._alts else []

    def _abandon(self, setup: SetupPacket) -> None:
        """End the SETUP state of a request the host has seen fail already."""
        try:
            if setup.is_in or setup.w_length:
                os.read(self._ep0, setup.w_length if not setup.is_in else 1)
            else:
                os.write(self._ep0, b"")
        except OSError as exc:
            # EL2HLT on an OUT request's read: a newer IN request was in its SETUP instead.
            self._stale = exc.errno == errno.EL2HLT and not setup.is_in

    def _ack(self) -> None:
        try:
            os.read(self._ep0, 0)
        except OSError as exc:
            if exc.errno != errno.EIDRM:
                raise GadgetError(
                    f"{self._mount}/ep0: cannot acknowledge: {exc.strerror}"
                ) from None

    # ------------------------------------------------------------------ endpoints

    async def _open_setting(self, number: int, alt: InterfaceDescriptor) -> None:
        for ep in alt.endpoints:
            self._open[ep.b_endpoint_address] = await self._open_endpoint(ep)
        self._alts[number] = alt.b_alternate_setting

    async def _open_endpoint(self, ep: EndpointDescriptor) -> EndpointFile:
        slot = self._layout.slots[ep.b_endpoint_address]
        path = self._mount / slot.file
        deadline = trio.current_time() + _OPEN_PATIENCE_S
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or trio.current_time() > deadline:
                    raise GadgetError(f"cannot open {path}: {exc.strerror}") from None
                await trio.sleep(_OPEN_RETRY_S)
        config = self._layout.endpoint_config(ep)
        try:
            os.write(fd, config)
        except OSError as exc:
            os.close(fd)
            if exc.errno in SHUTDOWN_ERRNOS:
                raise HostGone(f"{path}: the host went away ({exc.strerror})") from None
            raise GadgetError(
                f"the controller refused endpoint 0x{slot.local:02x} on {slot.file} "
                f"({ep.transfer_type.name.lower()}, {ep.max_packet_size} bytes): {exc.strerror}"
            ) from None
        return EndpointFile(fd, ep, path)

    async def _switch(self, number: int, value: int) -> None:
        alts = {a.b_alternate_setting: a for a in self._config.interfaces().get(number, ())}
        if value not in alts or number not in self._alts:
            return
        current = alts.get(self._alts[number])
        if current is not None:
            for ep in current.endpoints:
                endpoint = self._open.pop(ep.b_endpoint_address, None)
                if endpoint is not None:
                    endpoint.close()
        await self._open_setting(number, alts[value])

    # ------------------------------------------------------------------ data stage

    async def reply(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        length = self._setup.w_length if self._setup is not None else len(data)
        try:
            os.write(self._ep0, data[:length])
        except OSError as exc:
            raise GadgetError(f"{self._mount}/ep0: {exc.strerror}") from None

    async def receive(self) -> bytes:
        setup = self._setup
        if setup is None or setup.w_length == 0:
            if setup is not None and (setup.bm_request_type, setup.b_request) == (
                RequestType.INTERFACE,
                Request.SET_INTERFACE,
            ):
                try:
                    await self._switch(setup.w_index & 0xFF, setup.w_value & 0xFF)
                except GadgetError:
                    await self.stall()  # the host sees the setting refused, not a timeout
                    raise
            await trio.lowlevel.checkpoint()
            self._ack()
            return b""
        await trio.lowlevel.checkpoint()
        if self._out_data is None:
            raise GadgetError(f"{self._mount}/ep0: the host sent no data for {setup.pack().hex()}")
        data, self._out_data = self._out_data, None
        return data

    async def _collect_out_data(self, length: int) -> bytes:
        """The data stage of the OUT request just read: at once if it is in, else from a
        blocking read (which GadgetFS completes even if the host sends a new request)."""
        try:
            return os.read(self._ep0, length)
        except BlockingIOError:
            pass
        ep0 = self._ep0
        os.set_blocking(ep0, True)
        try:
            reading = Outstanding(lambda: libc_read(ep0, length))
            with trio.move_on_after(OUT_DATA_PATIENCE_S):
                data = await reading.wait()
                assert isinstance(data, bytes)
                return data
            reading.interrupt()  # a read left blocked would take the next request's data
            reading.join(1.0)
        finally:
            os.set_blocking(ep0, False)
        raise OSError(errno.ECANCELED, "no OUT data from the host")

    async def stall(self) -> None:
        await trio.lowlevel.checkpoint()
        wrong_way: Callable[[], object] = (
            (lambda: os.read(self._ep0, 1))
            if self._setup is not None and self._setup.is_in
            else (lambda: os.write(self._ep0, b""))
        )
        try:
            wrong_way()
        except OSError as exc:
            if exc.errno != errno.EL2HLT:
                raise GadgetError(f"{self._mount}/ep0: cannot stall: {exc.strerror}") from None

    def close_endpoints(self) -> None:
        for endpoint in self._open.values():
            endpoint.close()
        self._open.clear()


def _check_first_free(udc: str, sysfs_class_udc: Path) -> None:
    others = [u for u in list_udcs(sysfs_class_udc) if u != udc and udc_is_free(u, sysfs_class_udc)]
    if not udc_is_free(udc, sysfs_class_udc):
        raise GadgetError(f"{udc} is in use by another gadget", hint="unbind it, or choose --udc")
    if others:
        raise GadgetError(
            f"GadgetFS binds the first free controller, and {', '.join(others)} "
            f"{'is' if len(others) == 1 else 'are'} free besides {udc}",
            hint="bind the other controllers first, or use --backend functionfs",
        )


@asynccontextmanager
async def open_gadgetfs_gadget(
    snapshot: DeviceSnapshot,
    *,
    udc: str,
    config_index: int = 0,
    mount_root: Path = MOUNT_ROOT,
    sysfs_class_udc: Path = SYSFS_CLASS_UDC,
) -> AsyncIterator[GadgetFsGadget]:
    """Plug a GadgetFS gadget replaying ``snapshot`` into ``udc``; unplug it on exit."""
    config = snapshot.configurations[config_index]
    _check_first_free(udc, sysfs_class_udc)
    with _mounted(mount_root) as mount:
        ep0_path = mount / _ep0_name(mount)
        try:
            ep0 = os.open(ep0_path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            busy = exc.errno == errno.EBUSY
            why = "GadgetFS is serving another gadget (one at a time)" if busy else exc.strerror
            raise GadgetError(f"cannot open {ep0_path}: {why}") from None
        gadget: GadgetFsGadget | None = None
        try:
            # The addresses are checked against the real files once bound; first, a layout
            # with the remote's own addresses gives the descriptors to bind with.
            layout = gadgetfs_layout(snapshot, same_endpoint_addresses(config), config_index)
            _write(ep0, layout.blob(), ep0_path)
            if udc_is_free(udc, sysfs_class_udc):
                raise GadgetError(f"GadgetFS did not bind {udc}", hint=_HINT)
            files = [p.name for p in mount.iterdir() if p.name.startswith("ep")]
            iso = udc_driver(udc, sysfs_class_udc) not in NO_ISOCHRONOUS
            slots = map_endpoints(config, files, isochronous=iso)
            if any(s.local != s.remote for s in slots.values()):
                # Rebind with the addresses the controller can give.
                os.close(ep0)
                ep0 = os.open(ep0_path, os.O_RDWR | os.O_CLOEXEC)
                layout = gadgetfs_layout(snapshot, slots, config_index)
                _write(ep0, layout.blob(), ep0_path)
            else:
                layout = gadgetfs_layout(snapshot, slots, config_index)
            os.set_blocking(ep0, False)
            install_interrupt_handler()
            gadget = GadgetFsGadget(ep0, mount, config, layout)
            gadget.claim_requests()
            with collapse_single():
                async with trio.open_nursery() as nursery:
                    gadget.run_prefetch_in(nursery)
                    yield gadget
                    nursery.cancel_scope.cancel()
        finally:
            # Endpoint files first: unbinding waits for each endpoint's lock, which a call
            # blocked on the file holds until its request completes (interrupted here).
            if gadget is not None:
                gadget.close_endpoints()
            os.close(ep0)  # unbinds: the host sees the unplug


def _write(ep0: int, blob: bytes, path: Path) -> None:
    try:
        os.write(ep0, blob)
    except OSError as exc:
        why = "no free USB device controller" if exc.errno == errno.ENODEV else exc.strerror
        raise GadgetError(f"GadgetFS refused the descriptors ({path}: {why})") from None


__all__ = ["GadgetFsGadget", "gadgetfs_mounts", "open_gadgetfs_gadget"]
