"""A plugged GadgetFS gadget: the system calls on ep0 and the endpoint files.

What ep0 says and how it is answered is decided by ``GadgetFsEp0`` (``_ep0``), without I/O;
the gadget performs the calls it asks for, each through ``Syscalls``, and owns the endpoint
files. Nothing here blocks the trio loop: events are waited for with ``wait_readable``, OUT
data that cannot be polled is read in a thread, and a thread left blocked is interrupted
and awaited.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from usbip_gadget._errors import GadgetError
from usbip_gadget.gadget._blocking import Outstanding, libc_read
from usbip_gadget.gadget._endpoint_file import EndpointFile
from usbip_gadget.gadget._events import Ep0Event
from usbip_gadget.gadget._kernel import SHUTDOWN_ERRNOS
from usbip_gadget.gadget._remap import Remap
from usbip_gadget.gadget.gadgetfs._ep0 import GadgetFsEp0
from usbip_gadget.gadget.gadgetfs._ep0_actions import (
    DONE,
    Action,
    Answer,
    CloseEndpoints,
    CollectOutData,
    Deliver,
    Failed,
    Finish,
    HostGone,
    Idle,
    OpenSetting,
    Outcome,
    Read,
    ReadEp0,
    ReadEvents,
    Refused,
    WriteEp0,
)
from usbip_gadget.gadget.gadgetfs._layout import GadgetFsLayout
from usbip_gadget.usb import Configuration, EndpointDescriptor, InterfaceDescriptor

_OPEN_RETRY_S = 0.01
_OPEN_PATIENCE_S = 2.0  # a closed endpoint file is released once its last request is reaped
OUT_DATA_PATIENCE_S = 5.0  # the host's own control timeout
_INTERRUPT_PATIENCE_S = 1.0


@dataclass(frozen=True, slots=True)
class Syscalls:
    """The system calls the gadget makes on GadgetFS's files; tests pass a model's."""

    read: Callable[[int, int], bytes] = os.read
    write: Callable[[int, bytes], int] = os.write
    open: Callable[[Path, int], int] = os.open
    close: Callable[[int], None] = os.close
    set_blocking: Callable[[int, bool], None] = os.set_blocking
    # A read that fails with EINTR when its thread is signalled (Python's would restart).
    blocking_read: Callable[[int, int], bytes] = libc_read


class GadgetFsGadget:
    """A plugged GadgetFS gadget (see ``open_gadgetfs_gadget``)."""

    name = "gadgetfs"

    def __init__(
        self,
        ep0: int,
        mount: Path,
        config: Configuration,
        layout: GadgetFsLayout,
        syscalls: Syscalls = Syscalls(),
        machine: GadgetFsEp0 | None = None,
    ) -> None:
        self._ep0 = ep0
        self._mount = mount
        self._layout = layout
        self._sys = syscalls
        self._machine = machine or GadgetFsEp0(config, f"{mount}/ep0")
        self._open: dict[int, EndpointFile] = {}  # remote address → open endpoint
        self._nursery: trio.Nursery | None = None
        self._prefetch: trio.CancelScope | None = None
        self._prefetched = trio.Event()
        self._ep0_remap = Remap.build(
            endpoints={a: s.local for a, s in layout.slots.items() if a != s.local}
        )

    @property
    def endpoints(self) -> Sequence[EndpointFile]:
        return tuple(self._open.values())

    @property
    def ep0_remap(self) -> Remap:
        return self._ep0_remap

    # ------------------------------------------------------------------ the bridge's calls

    async def events(self) -> list[Ep0Event]:
        await self._stop_prefetch()
        await trio.lowlevel.checkpoint()
        done = await self._run(self._machine.events())
        assert isinstance(done, Deliver)
        if done.prefetch and self._nursery is not None:
            await self._nursery.start(self._prefetch_loop)
        return list(done.events)

    async def reply(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        await self._run(self._machine.reply(data))

    async def receive(self) -> bytes:
        await trio.lowlevel.checkpoint()
        done = await self._run(self._machine.receive())
        assert isinstance(done, Answer)
        return done.data

    async def stall(self) -> None:
        await trio.lowlevel.checkpoint()
        await self._run(self._machine.stall())

    # ------------------------------------------------------------------ prefetch

    def run_prefetch_in(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

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
                await self._run(self._machine.prefetch(), prefetching=True)
        finally:
            done.set()

    # ------------------------------------------------------------------ performing actions

    async def _run(self, action: Action, *, prefetching: bool = False) -> Finish:
        """Perform the machine's actions, each outcome fed back, up to one ending the call.
        A prefetch is cancelled only while it waits for events: once read, they are kept
        with their OUT data."""
        while not isinstance(action, Deliver | Answer | Idle):
            if prefetching and not isinstance(action, ReadEvents):
                with trio.CancelScope(shield=True):
                    outcome = await self._perform(action)
            else:
                outcome = await self._perform(action)
            action = self._machine.send(outcome)
        return action

    async def _perform(self, action: Action) -> Outcome:
        match action:
            case ReadEvents(length):
                return await self._read_events(length)
            case CollectOutData(length):
                return await self._collect_out_data(length)
            case OpenSetting(setting):
                return await self._open_setting(setting)
            case CloseEndpoints(addresses):
                await self._close(addresses)
                return DONE
        return self._call(action)

    def _call(self, action: Action) -> Outcome:
        return call_ep0(self._ep0, action, self._sys)

    async def _read_events(self, length: int) -> Outcome:
        while True:
            try:
                return Read(self._sys.read(self._ep0, length))
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._ep0)
            except OSError as exc:
                return Failed.of(exc)

    async def _collect_out_data(self, length: int) -> Outcome:
        """The data stage of the OUT request just read: at once if it is in, else from a
        blocking read (which GadgetFS completes even if the host sends a new request)."""
        try:
            return Read(self._sys.read(self._ep0, length))
        except BlockingIOError:
            pass
        except OSError as exc:
            return Failed.of(exc)
        self._sys.set_blocking(self._ep0, True)
        try:
            return await self._wait_out_data(length)
        finally:
            self._sys.set_blocking(self._ep0, False)

    async def _wait_out_data(self, length: int) -> Outcome:
        ep0, read = self._ep0, self._sys.blocking_read
        reading = Outstanding(lambda: read(ep0, length))
        with trio.move_on_after(OUT_DATA_PATIENCE_S):
            try:
                data = await reading.wait()
            except OSError as exc:
                return Failed.of(exc)
            assert isinstance(data, bytes)
            return Read(data)
        reading.interrupt()  # a read left blocked would take the next request's data
        await reading.join(_INTERRUPT_PATIENCE_S)
        return Failed(errno.ECANCELED)  # no OUT data from the host

    # ------------------------------------------------------------------ endpoint files

    async def _open_setting(self, setting: InterfaceDescriptor) -> Outcome:
        try:
            for ep in setting.endpoints:
                self._open[ep.b_endpoint_address] = await self._open_endpoint(ep)
        except GadgetError as exc:
            return Refused(exc)
        return DONE

    async def _open_endpoint(self, ep: EndpointDescriptor) -> EndpointFile:
        slot = self._layout.slots[ep.b_endpoint_address]
        path = self._mount / slot.file
        fd = await self._open_file(path)
        try:
            self._sys.write(fd, self._layout.endpoint_config(ep))
        except OSError as exc:
            self._sys.close(fd)
            if exc.errno in SHUTDOWN_ERRNOS:
                raise HostGone(f"{path}: the host went away ({exc.strerror})") from None
            raise GadgetError(
                f"the controller refused endpoint 0x{slot.local:02x} on {slot.file} "
                f"({ep.transfer_type.name.lower()}, {ep.max_packet_size} bytes): {exc.strerror}"
            ) from None
        return EndpointFile(fd, ep, path, release=self._sys.close)

    async def _open_file(self, path: Path) -> int:
        deadline = trio.current_time() + _OPEN_PATIENCE_S
        while True:
            try:
                return self._sys.open(path, os.O_RDWR | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno != errno.EBUSY or trio.current_time() > deadline:
                    raise GadgetError(f"cannot open {path}: {exc.strerror}") from None
                await trio.sleep(_OPEN_RETRY_S)

    async def _close(self, addresses: tuple[int, ...] | None) -> None:
        if addresses is None:
            await self.close_endpoints()
            return
        for address in addresses:
            endpoint = self._open.pop(address, None)
            if endpoint is not None:
                await endpoint.aclose()

    async def close_endpoints(self) -> None:
        """Close every endpoint file (calls blocked on them interrupted first)."""
        closing = list(self._open.values())
        self._open.clear()
        for endpoint in closing:
            await endpoint.aclose()


def call_ep0(ep0: int, action: Action, syscalls: Syscalls) -> Outcome:
    """One call on ep0 that does not wait: a read or a write, its outcome."""
    try:
        match action:
            case ReadEp0(length):
                return Read(syscalls.read(ep0, length))
            case WriteEp0(data):
                syscalls.write(ep0, data)
                return DONE
    except OSError as exc:
        return Failed.of(exc)
    raise RuntimeError(f"not a call on ep0: {action!r}")


def claim_ep0(ep0: int, machine: GadgetFsEp0, syscalls: Syscalls = Syscalls()) -> bool:
    """Read non-blocking ``ep0`` once (and an OUT request's data with it), feeding ``machine``:
    until its first events read, GadgetFS answers SET_CONFIGURATION itself, telling user
    space nothing, and stalls string and class requests. Events read now are kept.

    True when the host had begun enumerating before this read (``GadgetFsEp0.host_began``),
    so it may have met those answers."""
    action = machine.claim()
    while not isinstance(action, Idle):
        action = machine.send(call_ep0(ep0, action, syscalls))
    return machine.host_began


__all__ = ["GadgetFsGadget", "Syscalls", "claim_ep0"]
