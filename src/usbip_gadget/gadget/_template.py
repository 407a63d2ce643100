"""Gadget templates: source devices for a lab, as TOML, built with the kernel's functions.

A template names the device (``[device]``: idVendor, idProduct and optionally bcdDevice,
bcdUSB, bDeviceClass, bDeviceSubClass, bDeviceProtocol), its strings (``[strings]``:
manufacturer, product, serialnumber), its one configuration (``[config]``: MaxPower in mA,
configuration) and its kernel functions (``[[functions]]``: kind and instance as in
``functions/<kind>.<instance>``, and ``attributes``, paths below the function directory;
``{ hex = "..." }`` for a binary one). ``${NAME}`` in any text is a variable of
``[variables]`` (``{ default = ..., help = ... }``; one without a default must be given).

``gadget_up`` builds a template through ``ConfigfsGadget`` and binds it, and leaves it in
place; ``remove_gadget`` takes it down. The shipped templates are in ``templates/``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from usbip_gadget._errors import GadgetError, TemplateError
from usbip_gadget.gadget._configfs import GADGET_ROOT, ConfigfsGadget
from usbip_gadget.usb import DeviceSnapshot, Speed

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DEVICE_FIELDS = {
    "idVendor": 0xFFFF, "idProduct": 0xFFFF, "bcdDevice": 0xFFFF, "bcdUSB": 0xFFFF,
    "bDeviceClass": 0xFF, "bDeviceSubClass": 0xFF, "bDeviceProtocol": 0xFF,
}  # fmt: skip
_STRINGS = ("manufacturer", "product", "serialnumber")
_LANG_EN_US = 0x0409
_CONFIG_VALUE = 1


@dataclass(frozen=True, slots=True)
class TemplateFunction:
    """``functions/<kind>.<instance>`` and what is written in it before it is linked."""

    kind: str
    instance: str
    attributes: tuple[tuple[str, str | bytes], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.instance}"


@dataclass(frozen=True, slots=True)
class GadgetTemplate:
    """A template with its variables filled in."""

    name: str
    description: str
    vid: int
    pid: int
    functions: tuple[TemplateFunction, ...]
    bcd_device: int = 0x0100
    bcd_usb: int = 0x0200
    device_class: tuple[int, int, int] = (0, 0, 0)
    manufacturer: str = "usbip-gadget"
    product: str = ""
    serial: str = "0123456789"
    max_power_ma: int = 100
    configuration: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)

    def snapshot(self) -> DeviceSnapshot:
        """The device and configuration descriptors ``ConfigfsGadget`` writes (the
        interfaces are the functions')."""
        device = bytes([18, 1, *self.bcd_usb.to_bytes(2, "little"), *self.device_class, 64])
        device += b"".join(v.to_bytes(2, "little") for v in (self.vid, self.pid, self.bcd_device))
        device += bytes([1, 2, 3, 1])
        config = bytes([9, 2, 9, 0, 0, _CONFIG_VALUE, 4, 0x80, self.max_power_ma // 2])
        texts = (self.manufacturer, self.product, self.serial, self.configuration)
        strings = {_LANG_EN_US: {i: text for i, text in enumerate(texts, 1) if text}}
        return DeviceSnapshot.from_raw(
            "template", Speed.HIGH, device, (config,), lang_ids=(_LANG_EN_US,), strings=strings
        )


#: A template's optional fields as the dataclass defaults them.
_DEFAULTS = GadgetTemplate("", "", 0, 0, ())


def template_names() -> list[str]:
    """The shipped templates."""
    folder = resources.files(__package__).joinpath("templates")
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def template_description(name: str) -> str:
    """A shipped template's one-line description (its variables need no values)."""
    path = resources.files(__package__).joinpath("templates", f"{name}.toml")
    description = tomllib.loads(path.read_text()).get("description", "")
    return str(description)


def load_template(name_or_path: str, values: Mapping[str, str] | None = None) -> GadgetTemplate:
    """A shipped template by name, or a template file by path, with ``values`` for its
    variables; ``TemplateError`` for anything wrong, named."""
    if "/" in name_or_path or name_or_path.endswith(".toml"):
        path, where = Path(name_or_path), name_or_path
        name = path.name.removesuffix(".toml")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TemplateError(f"cannot read template {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise TemplateError(f"{where}: not TOML: not UTF-8 text") from None
    else:
        name, where = name_or_path, f"template {name_or_path}"
        if name not in template_names():
            raise TemplateError(
                f"no template {name!r}", hint=f"templates: {', '.join(template_names())}"
            )
        text = resources.files(__package__).joinpath("templates", f"{name}.toml").read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{where}: not TOML: {exc}") from None
    return _Reader(where, data, dict(values or {})).template(name)


class _Reader:
    """Reads one template's table, every key checked, every text with its variables."""

    def __init__(self, where: str, data: dict[str, Any], values: dict[str, str]) -> None:
        self.where = where
        self.data = data
        self.variables = self._variables(values)

    def template(self, name: str) -> GadgetTemplate:
        self._keys(self.data, "", {"description", "variables", "device", "strings", "config",
                                   "functions"})  # fmt: skip
        device = self._table("device", set(_DEVICE_FIELDS))
        number = {key: self._number(device, key, top) for key, top in _DEVICE_FIELDS.items()}
        strings = self._table("strings", set(_STRINGS))
        config = self._table("config", {"MaxPower", "configuration"})
        functions = self.data.get("functions")
        if not isinstance(functions, list) or not functions:
            raise TemplateError(f"{self.where}: functions: at least one [[functions]] table")
        defaults = _DEFAULTS
        power = self._number(config, "MaxPower", 500)
        return GadgetTemplate(
            name=name,
            description=self._text(self.data.get("description", ""), "description"),
            vid=_required(number, "idVendor", self.where),
            pid=_required(number, "idProduct", self.where),
            functions=tuple(self._function(f, i) for i, f in enumerate(functions)),
            bcd_device=_or(number["bcdDevice"], defaults.bcd_device),
            bcd_usb=_or(number["bcdUSB"], defaults.bcd_usb),
            device_class=(
                number["bDeviceClass"] or 0,
                number["bDeviceSubClass"] or 0,
                number["bDeviceProtocol"] or 0,
            ),
            manufacturer=self._text(strings.get("manufacturer", defaults.manufacturer), "strings"),
            product=self._text(strings.get("product", ""), "strings.product"),
            serial=self._text(strings.get("serialnumber", defaults.serial), "strings"),
            max_power_ma=_or(power, defaults.max_power_ma),
            configuration=self._text(config.get("configuration", ""), "config.configuration"),
            variables=self.variables,
        )

    def _variables(self, values: dict[str, str]) -> dict[str, str]:
        declared = self.data.get("variables", {})
        if not isinstance(declared, dict):
            raise TemplateError(f"{self.where}: variables: expected a table")
        for key in values:
            if key not in declared:
                known = ", ".join(declared) or "none"
                raise TemplateError(f"{self.where} has no variable {key!r} (variables: {known})")
        found: dict[str, str] = {}
        for key, spec in declared.items():
            if not isinstance(spec, dict):
                raise TemplateError(f"{self.where}: variables.{key}: expected a table")
            self._keys(spec, f"variables.{key}.", {"default", "help"})
            value = values.get(key, spec.get("default"))
            if value is None:
                raise TemplateError(
                    f"{self.where} needs {key}: {spec.get('help', 'no help given')}",
                    hint=f"--set {key}=VALUE",
                )
            found[key] = str(value)
        return found

    def _function(self, table: object, index: int) -> TemplateFunction:
        where = f"functions[{index}]"
        if not isinstance(table, dict):
            raise TemplateError(f"{self.where}: {where}: expected a table")
        self._keys(table, f"{where}.", {"kind", "instance", "attributes"})
        kind, instance = table.get("kind"), table.get("instance")
        if not isinstance(kind, str) or not isinstance(instance, str):
            raise TemplateError(f"{self.where}: {where}: kind and instance are text")
        attributes = table.get("attributes", {})
        if not isinstance(attributes, dict):
            raise TemplateError(f"{self.where}: {where}.attributes: expected a table")
        return TemplateFunction(
            kind,
            instance,
            tuple((key, self._attribute(v, f"{where}.{key}")) for key, v in attributes.items()),
        )

    def _attribute(self, value: object, where: str) -> str | bytes:
        if isinstance(value, dict) and set(value) == {"hex"} and isinstance(value["hex"], str):
            try:
                return bytes.fromhex(value["hex"])
            except ValueError:
                raise TemplateError(f"{self.where}: {where}: not hex") from None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise TemplateError(f"{self.where}: {where}: expected text, a number or {{hex}}")
        return self._text(str(value), where)

    def _text(self, value: object, where: str) -> str:
        if not isinstance(value, str):
            raise TemplateError(f"{self.where}: {where}: expected text")

        def substitute(found: re.Match[str]) -> str:
            key = found.group(1)
            if key not in self.variables:
                raise TemplateError(f"{self.where}: {where}: no variable {key!r}")
            return self.variables[key]

        return _VARIABLE.sub(substitute, value)

    def _table(self, key: str, allowed: set[str]) -> dict[str, Any]:
        table = self.data.get(key, {})
        if not isinstance(table, dict):
            raise TemplateError(f"{self.where}: {key}: expected a table")
        self._keys(table, f"{key}.", allowed)
        return table

    def _number(self, table: Mapping[str, Any], key: str, top: int) -> int | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            raise TemplateError(f"{self.where}: {key}: expected a number from 0 to {top:#x}")
        return value

    def _keys(self, table: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise TemplateError(f"{self.where}: unknown key {prefix}{key} (known: {known})")


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _required(numbers: Mapping[str, int | None], key: str, where: str) -> int:
    value = numbers[key]
    if value is None:
        raise TemplateError(f"{where}: device.{key} is required")
    return value


def gadget_up(template: GadgetTemplate, *, name: str, udc: str, root: Path = GADGET_ROOT) -> Path:
    """Build ``template`` as gadget ``name`` and bind it to ``udc``; it stays after this
    returns (``remove_gadget`` takes it down). On a failure, what was made is removed."""
    gadget = ConfigfsGadget(template.snapshot(), name, root=root)
    try:
        gadget.build()
        for function in template.functions:
            gadget.add_function(function.kind, function.instance, _CONFIG_VALUE,
                                function.attributes)  # fmt: skip
        gadget.bind(udc)
    except BaseException as exc:
        try:
            gadget.teardown()
        except GadgetError as failure:
            exc.add_note(f"teardown also failed: {failure.one_line()}")
        raise
    return gadget.path
