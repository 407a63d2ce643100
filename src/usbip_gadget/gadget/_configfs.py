"""A USB gadget in configfs, built from a device snapshot and taken down in reverse.

The tree lives at ``/sys/kernel/config/usb_gadget/<name>`` (libcomposite's configfs
interface, Documentation/usb/gadget_configfs.rst). configfs is not an ordinary filesystem:

- ``mkdir usb_gadget/<name>`` makes the kernel create the attribute files (``idVendor``,
  ``UDC``, ...) and the default groups ``configs``, ``functions``, ``strings``, ``os_desc``
  and ``webusb``; ``mkdir strings/0x409`` and ``mkdir configs/c.1`` likewise create their
  attribute files (and ``configs/c.1/strings``).
- Those kernel-made nodes cannot be removed by hand; they go when their parent is removed.
  What the user creates (the gadget directory, ``strings/<lang>``, ``configs/c.N``,
  ``configs/c.N/strings/<lang>``, ``functions/<kind>.<instance>`` and the symlinks from a
  configuration to its functions) must be removed by the user, children first, symlinks
  before their targets, and the gadget unbound from its UDC before any of it.

So this module creates only the directories a user creates, records each one (and each
symlink) in order, and removes exactly those in reverse. Attributes are written with
``O_WRONLY | O_TRUNC`` and no ``O_CREAT``: a file that is not there is a mistake, not
something to create. The default groups are made with ``exist_ok`` and never recorded, so
on a tree that is not configfs (a test double that does not emulate the kernel) they are
made but left in place. Every ``OSError`` becomes a ``GadgetError`` naming the path, with a
hint chosen from the errno.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from usbip_gadget._errors import EndpointsExhausted, GadgetError
from usbip_gadget.gadget._configfs_strings import device_strings, texts
from usbip_gadget.gadget._udc import SYSFS_CLASS_UDC, udc_is_free
from usbip_gadget.usb import Configuration, DeviceSnapshot, Speed

CONFIGFS = Path("/sys/kernel/config")
GADGET_ROOT = CONFIGFS / "usb_gadget"

LIBCOMPOSITE_HINT = "is libcomposite loaded? (modprobe libcomposite)"
CONFIGFS_HINT = (
    "is configfs mounted at /sys/kernel/config? (mount -t configfs none /sys/kernel/config)"
)
UDC_BUSY_HINT = "the UDC is in use by another gadget (or no UDC has that name: see /sys/class/udc)"
PERMISSION_HINT = "configfs gadgets can only be made by root"
_LEFTOVER_HINT = "remove what is left by hand (unlink symlinks, then rmdir, newest first)"

# Default groups the kernel makes in a gadget directory (and ``strings`` in each config).
_KERNEL_GROUPS = ("configs", "functions", "strings")
# Device descriptor fields (USB 2.0 §9.6.1) as (configfs attribute, snapshot field, digits).
_DEVICE_ATTRIBUTES = (
    ("bcdUSB", "bcd_usb", 4),
    ("bDeviceClass", "b_device_class", 2),
    ("bDeviceSubClass", "b_device_sub_class", 2),
    ("bDeviceProtocol", "b_device_protocol", 2),
    ("bMaxPacketSize0", "b_max_packet_size0", 2),
    ("idVendor", "id_vendor", 4),
    ("idProduct", "id_product", 4),
    ("bcdDevice", "bcd_device", 4),
)
# bmAttributes bits the kernel accepts (USB 2.0 Table 9-10): D7 set, self-powered, wakeup.
_CONFIG_ATTRIBUTE_BITS = 0xE0
_CONFIG_ATTRIBUTE_ONE = 0x80


@dataclass(frozen=True, slots=True)
class _Node:
    """A configfs node we created: a directory or a symlink."""

    path: Path
    is_link: bool

    def remove(self) -> None:
        if self.is_link:
            os.unlink(self.path)
        else:
            os.rmdir(self.path)


class ConfigfsGadget:
    """A configfs gadget mirroring ``snapshot``'s device, strings and configurations.

    Use as a context manager: entering builds the tree (tearing down what was made if
    building fails), leaving tears it down. ``super_speed`` says whether ``bMaxPower`` is in
    8 mA units (SuperSpeed) rather than 2 mA; by default it follows the snapshot's speed.
    An existing gadget of the same name is refused unless ``replace`` is true.
    """

    def __init__(
        self,
        snapshot: DeviceSnapshot,
        name: str = "usbip-gadget",
        *,
        root: Path = GADGET_ROOT,
        super_speed: bool | None = None,
        replace: bool = False,
        sysfs_class_udc: Path = SYSFS_CLASS_UDC,
    ) -> None:
        if not name or "/" in name or name in {".", ".."}:
            raise GadgetError(f"invalid gadget name {name!r}", hint="use letters, digits, - and _")
        self._snapshot = snapshot
        self._root = root
        self._sysfs_class_udc = sysfs_class_udc
        self.path = root / name
        if super_speed is None:
            super_speed = snapshot.speed in {Speed.SUPER, Speed.SUPER_PLUS}
        self._super_speed = super_speed
        self._replace = replace
        self._created: list[_Node] = []
        self._config_values: set[int] = set()

    @property
    def created(self) -> tuple[Path, ...]:
        """Every directory and symlink made and not yet removed, oldest first."""
        return tuple(node.path for node in self._created)

    def __enter__(self) -> Self:
        try:
            self.build()
        except BaseException as exc:
            self._teardown_noting(exc)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.teardown()
        else:
            self._teardown_noting(exc)

    def build(self) -> None:
        """Create the gadget directory, device attributes, strings and configurations."""
        if self._created:
            raise GadgetError(f"gadget {self.path} is already built")
        self._claim_directory()
        self._mkdir(self.path)
        for group in _KERNEL_GROUPS:
            self._ensure_group(self.path / group)
        device = self._snapshot.device
        for attribute, field_name, digits in _DEVICE_ATTRIBUTES:
            self._write(self.path / attribute, f"0x{getattr(device, field_name):0{digits}x}")
        self._write_strings(self.path, device_strings(self._snapshot))
        for config in self._snapshot.configurations:
            self._build_config(config)

    def add_function(
        self,
        kind: str,
        instance: str,
        config_value: int,
        attributes: Sequence[tuple[str, str | bytes]] = (),
    ) -> Path:
        """Make ``functions/<kind>.<instance>``, write its ``attributes`` (paths below the
        function directory) and link it into ``configs/c.<config_value>``. The attributes
        come first: most functions refuse changes (EBUSY) once linked into a configuration.

        Returns the function directory (for FunctionFS, kind ``"ffs"``, the instance name is
        what ``mount -t functionfs`` takes as its device).
        """
        if not kind or not instance or "." in kind or "/" in kind + instance:
            raise GadgetError(f"invalid function name {kind!r}.{instance!r}")
        if config_value not in self._config_values:
            raise GadgetError(
                f"gadget {self.path.name} has no configuration {config_value}",
                hint=f"built configurations: {sorted(self._config_values)}",
            )
        function = self.path / "functions" / f"{kind}.{instance}"
        self._mkdir(function)
        for relative, value in attributes:
            if relative.startswith("/") or ".." in Path(relative).parts:
                raise GadgetError(f"invalid attribute {relative!r} of function {function.name}")
            self._write(function / relative, value)
        self._symlink(self.path / "configs" / f"c.{config_value}" / function.name, function)
        return function

    def bind(self, udc: str) -> None:
        """Attach the gadget to the USB device controller ``udc`` (writes ``UDC``)."""
        if not udc or udc.strip() != udc:
            raise GadgetError(f"invalid UDC name {udc!r}", hint="see /sys/class/udc")
        try:
            _write_attribute(self.path / "UDC", udc)
        except OSError as exc:
            # Since Linux 6.0 the UDC core reports any failed bind as EBUSY ("couldn't find an
            # available UDC or it's busy"); a controller that is still free afterwards was not
            # busy, so its bind failed, which for an f_fs function means usb_ep_autoconfig
            # found no endpoint to match one of the function's.
            if exc.errno in _NO_ENDPOINT_ERRNOS or (
                exc.errno == errno.EBUSY and udc_is_free(udc, self._sysfs_class_udc)
            ):
                raise EndpointsExhausted(
                    f"{udc} is free but refused the gadget at bind: it has no endpoint to match"
                    " one of the gadget's"
                ) from None
            raise self._error("write", self.path / "UDC", exc) from None

    def unbind(self) -> None:
        """Detach the gadget from its UDC; nothing happens if it is not bound."""
        udc = self.path / "UDC"
        try:
            bound = udc.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._error("read", udc, exc) from None
        if not bound:
            return
        try:
            # A bare newline: the kernel strips it, and a zero-length write may never arrive.
            _write_attribute(udc, "\n")
        except OSError as exc:
            if exc.errno != errno.ENODEV:  # ENODEV: it was not bound after all
                raise self._error("unbind", udc, exc) from None

    def teardown(self) -> None:
        """Unbind, then remove every recorded node, newest first, carrying on past errors.

        Raises one ``GadgetError`` listing what could not be removed (those nodes stay
        recorded, so calling again retries them). Calling it again when all is gone is a
        no-op, and a gadget directory this object did not create is never touched.
        """
        if not self._created:
            return
        failures: list[str] = []
        try:
            self.unbind()
        except GadgetError as exc:
            failures.append(str(exc))
        remaining: list[_Node] = []
        for node in reversed(self._created):
            if (failure := _remove(node)) is not None:
                failures.append(failure)
                remaining.append(node)
        self._created = remaining[::-1]
        if failures:
            message = f"could not tear down gadget {self.path}: " + "; ".join(failures)
            raise GadgetError(message, hint=_LEFTOVER_HINT)

    # Building blocks.

    def _teardown_noting(self, exc: BaseException) -> None:
        """Tear down while ``exc`` is in flight; a teardown failure becomes a note on it."""
        try:
            self.teardown()
        except GadgetError as failure:
            exc.add_note(f"teardown also failed: {failure.one_line()}")

    def _claim_directory(self) -> None:
        """Refuse an existing gadget of our name, or (``replace``) remove it."""
        if not os.path.lexists(self.path):
            return
        if not self._replace:
            raise GadgetError(
                f"gadget {self.path} already exists",
                hint="another gadget may be using it: remove it, or replace it with --replace",
            )
        self.unbind()
        failures = [f for node in _stale_nodes(self.path) if (f := _remove(node)) is not None]
        if failures:
            message = f"could not remove stale gadget {self.path}: " + "; ".join(failures)
            raise GadgetError(message, hint=_LEFTOVER_HINT)

    def _build_config(self, config: Configuration) -> None:
        """``configs/c.N`` with bmAttributes, MaxPower and its strings."""
        value = config.b_configuration_value
        directory = self.path / "configs" / f"c.{value}"
        self._mkdir(directory)
        self._config_values.add(value)
        # The kernel rejects bmAttributes without D7 or with reserved bits; old devices
        # sometimes report both, so keep only what a configuration may say.
        attributes = (config.bm_attributes | _CONFIG_ATTRIBUTE_ONE) & _CONFIG_ATTRIBUTE_BITS
        self._write(directory / "bmAttributes", f"0x{attributes:02x}")
        unit_ma = 8 if self._super_speed else 2
        self._write(directory / "MaxPower", str(config.b_max_power * unit_ma))
        self._ensure_group(directory / "strings")
        strings = texts(self._snapshot, {"configuration": config.i_configuration})
        self._write_strings(directory, strings)

    def _write_strings(self, parent: Path, texts: Mapping[int, Mapping[str, str]]) -> None:
        """``strings/<lang>/<attribute>`` under ``parent`` for every language with text."""
        for lang_id, attributes in texts.items():
            directory = parent / "strings" / f"0x{lang_id:x}"
            self._mkdir(directory)
            for attribute, text in attributes.items():
                self._write(directory / attribute, text)

    def _mkdir(self, path: Path) -> None:
        try:
            os.mkdir(path)
        except OSError as exc:
            raise self._error("create", path, exc) from None
        self._created.append(_Node(path, is_link=False))

    def _ensure_group(self, path: Path) -> None:
        """A default group: the kernel made it already on configfs; never recorded."""
        try:
            os.mkdir(path)
        except FileExistsError:
            pass
        except OSError as exc:
            raise self._error("create", path, exc) from None

    def _symlink(self, link: Path, target: Path) -> None:
        try:
            link.symlink_to(target, target_is_directory=True)
        except OSError as exc:
            raise self._error("link", link, exc) from None
        self._created.append(_Node(link, is_link=True))

    def _write(self, path: Path, text: str | bytes) -> None:
        try:
            _write_attribute(path, text)
        except OSError as exc:
            raise self._error("write", path, exc) from None

    def _error(self, action: str, path: Path, exc: OSError) -> GadgetError:
        return configfs_error(action, path, exc, root=self._root)


# Before Linux 6.0, a failed bind came back as the function's own error: f_fs answers ENOTSUPP
# (524, kernel-internal) when usb_ep_autoconfig finds no endpoint, other functions EOPNOTSUPP.
_NO_ENDPOINT_ERRNOS = {524, errno.EOPNOTSUPP}


def configfs_error(
    action: str, path: Path, exc: OSError, *, root: Path = GADGET_ROOT
) -> GadgetError:
    """The ``GadgetError`` for a failed configfs operation on ``path``, with a hint."""
    reason = exc.strerror or os.strerror(exc.errno or 0)
    return GadgetError(f"cannot {action} {path}: {reason}", hint=_hint(path, exc.errno, root))


def _hint(path: Path, code: int | None, root: Path) -> str | None:
    if path.name == "UDC" and code == errno.EBUSY:
        return UDC_BUSY_HINT
    if code in {errno.EPERM, errno.EACCES}:
        return PERMISSION_HINT
    if code == errno.ENOENT and not root.is_dir():
        # /sys/kernel/config exists (empty) even when configfs is not mounted there.
        mounted = root.parent.is_dir() and any(root.parent.iterdir())
        return LIBCOMPOSITE_HINT if mounted else CONFIGFS_HINT
    return None


def _write_attribute(path: Path, text: str | bytes) -> None:
    """One write of ``text`` to an existing attribute file, as configfs wants it."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _remove(node: _Node) -> str | None:
    """Remove ``node``; a description of the failure, or None (also when already gone)."""
    try:
        node.remove()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{node.path} ({exc.strerror})"
    return None


def _stale_nodes(gadget: Path) -> Iterator[_Node]:
    """The user-made nodes of an existing gadget tree, in the order they must be removed."""
    configs = _subdirs(gadget / "configs")
    for parent in (gadget / "os_desc", *configs):
        if parent.is_dir():
            yield from (_Node(p, is_link=True) for p in sorted(parent.iterdir()) if p.is_symlink())
    for config in configs:
        yield from (_Node(p, is_link=False) for p in _subdirs(config / "strings"))
        yield _Node(config, is_link=False)
    for group in ("functions", "strings"):
        yield from (_Node(p, is_link=False) for p in _subdirs(gadget / group))
    yield _Node(gadget, is_link=False)


def _subdirs(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.is_symlink())
