"""Plugging a GadgetFS gadget in and out (legacy/inode.c).

Life cycle: mount ``gadgetfs`` (one per system; mounting loads the module), open its ep0 file
(named after the controller: ``dummy_udc``, ``20980000.usb``), and write the descriptors
(``_layout``): that one write binds the first free controller and connects. The endpoint
files then appear, named after the controller's endpoints. Closing ep0 unplugs.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from usbip_gadget._errors import GadgetError
from usbip_gadget._groups import collapse_single
from usbip_gadget.gadget._blocking import install_interrupt_handler
from usbip_gadget.gadget._kernel import MOUNT_ROOT, mount_filesystem, unmount
from usbip_gadget.gadget._udc import SYSFS_CLASS_UDC, list_udcs, udc_driver, udc_is_free
from usbip_gadget.gadget.gadgetfs._endpoints import (
    NO_ISOCHRONOUS,
    map_endpoints,
    same_endpoint_addresses,
)
from usbip_gadget.gadget.gadgetfs._ep0 import GadgetFsEp0
from usbip_gadget.gadget.gadgetfs._gadget import GadgetFsGadget, Syscalls, claim_ep0
from usbip_gadget.gadget.gadgetfs._layout import gadgetfs_layout
from usbip_gadget.usb import Configuration, DeviceSnapshot

_HINT = "is gadgetfs available? (modprobe gadgetfs)"
_PLUG_ATTEMPTS = 3
_SYSCALLS = Syscalls()


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
        # The addresses are checked against the real files once bound; first, a layout with
        # the remote's own addresses gives the descriptors to bind with.
        layout = gadgetfs_layout(snapshot, same_endpoint_addresses(config), config_index)
        ep0, machine = plug_in(ep0_path, layout.blob(), config, udc, sysfs_class_udc)
        gadget: GadgetFsGadget | None = None
        try:
            files = [p.name for p in mount.iterdir() if p.name.startswith("ep")]
            iso = udc_driver(udc, sysfs_class_udc) not in NO_ISOCHRONOUS
            slots = map_endpoints(config, files, isochronous=iso)
            layout = gadgetfs_layout(snapshot, slots, config_index)
            if any(s.local != s.remote for s in slots.values()):
                # Plug in again with the addresses the controller can give.
                os.close(ep0)
                ep0 = -1
                ep0, machine = plug_in(ep0_path, layout.blob(), config, udc, sysfs_class_udc)
            install_interrupt_handler()
            gadget = GadgetFsGadget(ep0, mount, config, layout, machine=machine)
            with collapse_single():
                async with trio.open_nursery() as nursery:
                    gadget.run_prefetch_in(nursery)
                    yield gadget
                    nursery.cancel_scope.cancel()
        finally:
            # Endpoint files first: unbinding waits for each endpoint's lock, which a call
            # blocked on the file holds until its request completes (interrupted here).
            if gadget is not None:
                with trio.CancelScope(shield=True):
                    await gadget.close_endpoints()
            if ep0 >= 0:
                os.close(ep0)  # unbinds: the host sees the unplug


def plug_in(
    ep0_path: Path,
    blob: bytes,
    config: Configuration,
    udc: str,
    sysfs_class_udc: Path = SYSFS_CLASS_UDC,
    syscalls: Syscalls = _SYSCALLS,
) -> tuple[int, GadgetFsEp0]:
    """Open ep0, write ``blob`` (which binds the controller and connects) and claim ep0's
    requests (``claim_ep0``) right away, well inside the host's connect debounce (100 ms).
    Should the host still have begun enumerating first, GadgetFS may have answered
    SET_CONFIGURATION itself (user space would never hear of it) and stalled string
    requests: plug in again."""
    for _ in range(_PLUG_ATTEMPTS):
        ep0 = _open_ep0(ep0_path, syscalls)
        machine = GadgetFsEp0(config, f"{ep0_path.parent}/ep0")
        try:
            _write(ep0, blob, ep0_path, syscalls)
            syscalls.set_blocking(ep0, False)
            began = claim_ep0(ep0, machine, syscalls)
            _check_bound(udc, sysfs_class_udc)
        except BaseException:
            syscalls.close(ep0)
            raise
        if not began:
            return ep0, machine
        syscalls.close(ep0)
    raise GadgetError(
        f"the host began enumerating the device on {udc} before GadgetFS passed its "
        f"requests on, {_PLUG_ATTEMPTS} times",
        hint="is the machine overloaded?",
    )


def _check_bound(udc: str, sysfs_class_udc: Path) -> None:
    if udc_is_free(udc, sysfs_class_udc):
        raise GadgetError(f"GadgetFS did not bind {udc}", hint=_HINT)


def _open_ep0(ep0_path: Path, syscalls: Syscalls) -> int:
    try:
        return syscalls.open(ep0_path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        busy = exc.errno == errno.EBUSY
        why = "GadgetFS is serving another gadget (one at a time)" if busy else exc.strerror
        raise GadgetError(f"cannot open {ep0_path}: {why}") from None


def _write(ep0: int, blob: bytes, path: Path, syscalls: Syscalls) -> None:
    try:
        syscalls.write(ep0, blob)
    except OSError as exc:
        why = "no free USB device controller" if exc.errno == errno.ENODEV else exc.strerror
        raise GadgetError(f"GadgetFS refused the descriptors ({path}: {why})") from None


__all__ = ["gadgetfs_mounts", "open_gadgetfs_gadget"]
