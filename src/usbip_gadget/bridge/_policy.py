"""What may be plugged into the host: the device policy of ``attach`` and ``listen``.

Checked on the enumerated ``DeviceSnapshot``, after the device is imported and before any
gadget exists, so a refused device never reaches the host. A HID interface can type on the
host (a "scanner" whose second interface is a keyboard), so it is plugged only when a rule
names it: ``--allow VID:PID`` for this device, or an ``--allow-class`` rule of class 03.

- No rule at all: every device without a HID interface is plugged.
- With rules: a device is plugged when an ``--allow`` rule names it, or when ``--allow-class``
  rules cover every interface of the configuration replayed (each alternate setting counts).

``DeviceGate`` is one run's use of a policy: with ``pin`` (``attach``, whose ``--reconnect``
imports the device again) the descriptors admitted first are the only ones admitted again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from usbip_gadget._errors import DeviceRefused, UsbipGadgetError
from usbip_gadget.usb import ClassCode, DeviceSnapshot, InterfaceDescriptor

_HEX_BYTE = "([0-9a-fA-F]{1,2})"
_CLASS_RULE = re.compile(f"{_HEX_BYTE}(?::{_HEX_BYTE})?(?::{_HEX_BYTE})?")

Triple = tuple[int, int, int]  # class, subclass, protocol


def _triple(triple: Triple) -> str:
    return ":".join(f"{value:02x}" for value in triple)


def _ident(vid: int, pid: int) -> str:
    return f"{vid:04x}:{pid:04x}"


@dataclass(frozen=True, slots=True)
class ClassRule:
    """``--allow-class CLASS[:SUB[:PROTO]]``: bInterfaceClass, and bInterfaceSubClass and
    bInterfaceProtocol when given."""

    class_code: int
    subclass: int | None = None
    protocol: int | None = None

    def matches(self, triple: Triple) -> bool:
        code, subclass, protocol = triple
        return (
            code == self.class_code
            and self.subclass in (None, subclass)
            and self.protocol in (None, protocol)
        )

    def __str__(self) -> str:
        given = (v for v in (self.class_code, self.subclass, self.protocol) if v is not None)
        return "--allow-class " + ":".join(f"{value:02x}" for value in given)


def parse_class_rule(text: str) -> ClassRule:
    """``"07:01"`` → ``ClassRule(0x07, 0x01)``; hex bytes, subclass and protocol optional."""
    match = _CLASS_RULE.fullmatch(text)
    if match is None:
        raise UsbipGadgetError(
            f"{text!r} is not CLASS[:SUB[:PROTO]] (hex bytes, like 03 or 07:01:02)"
        )
    code, subclass, protocol = (None if g is None else int(g, 16) for g in match.groups())
    assert code is not None  # the pattern requires it
    return ClassRule(code, subclass, protocol)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether the policy plugs a device: the rules that admit it, or the rule it failed."""

    allowed: bool
    reason: str

    def line(self) -> str:
        """For ``plan``."""
        return f"policy: {'plugs' if self.allowed else 'refuses'} it: {self.reason}"

    def to_json(self) -> dict[str, object]:
        return {"allowed": self.allowed, "reason": self.reason}


def _where(alt: InterfaceDescriptor) -> str:
    setting = alt.b_alternate_setting
    return f"interface {alt.b_interface_number}" + (
        f" (alternate setting {setting})" if setting else ""
    )


def _units(snapshot: DeviceSnapshot) -> list[tuple[str, Triple]]:
    """What the rules are checked against: each interface of the configuration replayed, or
    the device class when it has none."""
    units = [
        (_where(alt), (alt.b_interface_class, alt.b_interface_sub_class, alt.b_interface_protocol))
        for config in snapshot.configurations[:1]
        for alt in config.alt_settings
    ]
    device = snapshot.device
    triple = (device.b_device_class, device.b_device_sub_class, device.b_device_protocol)
    return units or [("the device", triple)]


@dataclass(frozen=True, slots=True)
class DevicePolicy:
    """The operator's rules: ``--allow VID:PID`` (``ids``) and ``--allow-class`` (``classes``)."""

    ids: frozenset[tuple[int, int]] = frozenset()
    classes: tuple[ClassRule, ...] = ()

    @classmethod
    def of(
        cls, ids: Iterable[tuple[int, int]] = (), classes: Iterable[ClassRule] = ()
    ) -> DevicePolicy:
        return cls(frozenset(ids), tuple(classes))

    @property
    def empty(self) -> bool:
        return not self.ids and not self.classes

    def verdict(self, snapshot: DeviceSnapshot) -> Verdict:
        """Whether ``snapshot`` may be plugged, and by which rule or why not."""
        device = snapshot.device
        name = _ident(device.id_vendor, device.id_product)
        if (device.id_vendor, device.id_product) in self.ids:
            return Verdict(True, f"--allow {name}")
        units = _units(snapshot)
        if self.empty:
            return _without_rules(units, name)
        return self._by_class(units, name)

    def _by_class(self, units: list[tuple[str, Triple]], name: str) -> Verdict:
        used: list[str] = []
        for where, triple in units:
            rule = next((r for r in self.classes if r.matches(triple)), None)
            if rule is None:
                return Verdict(False, _uncovered(where, triple, name))
            if str(rule) not in used:
                used.append(str(rule))
        return Verdict(True, ", ".join(used))


def _without_rules(units: list[tuple[str, Triple]], name: str) -> Verdict:
    for where, triple in units:
        if triple[0] == ClassCode.HID:
            return Verdict(
                False,
                f"{where} is HID ({_triple(triple)}); only --allow {name} or --allow-class 03"
                " plugs it",
            )
    return Verdict(True, "no --allow rule given, and no HID interface")


def _uncovered(where: str, triple: Triple, name: str) -> str:
    if triple[0] == ClassCode.HID:
        return (
            f"{where} is HID ({_triple(triple)}) and no rule admits it: --allow {name} or"
            " --allow-class 03 would"
        )
    return f"{where} ({_triple(triple)}) matches no --allow-class rule, and no --allow names {name}"


NO_RULES = DevicePolicy()


def _named(snapshot: DeviceSnapshot, origin: str) -> str:
    """VID:PID, the product string if it was read (quoted, so it cannot fake a line), origin."""
    device = snapshot.device
    product = snapshot.string(device.i_product)
    shown = f" {product!r}" if product else ""
    return f"{_ident(device.id_vendor, device.id_product)}{shown} ({origin})"


class DeviceGate:
    """One run's use of a ``DevicePolicy``: one ``attach`` (``pin``) or one ``listen``."""

    def __init__(self, policy: DevicePolicy = NO_RULES, *, pin: bool = False) -> None:
        self.policy = policy
        self._pin = pin
        self._pinned: tuple[bytes, tuple[bytes, ...]] | None = None
        self._hinted: set[tuple[int, int]] = set()

    def admit(self, snapshot: DeviceSnapshot, origin: str) -> str | None:
        """``DeviceRefused`` (naming the device and the rule it failed) unless ``snapshot`` may
        be plugged; a line for the log the first time a device is plugged with no rule."""
        verdict = self.policy.verdict(snapshot)
        if not verdict.allowed:
            raise DeviceRefused(f"refused {_named(snapshot, origin)}: {verdict.reason}")
        self._check_pinned(snapshot, origin)
        return self._hint(snapshot)

    def _check_pinned(self, snapshot: DeviceSnapshot, origin: str) -> None:
        if not self._pin:
            return
        # Strings aside: a string may read differently, the descriptors may not.
        descriptors = (snapshot.device_raw, snapshot.configurations_raw)
        if self._pinned is None:
            self._pinned = descriptors
        elif descriptors != self._pinned:
            raise DeviceRefused(
                f"refused {_named(snapshot, origin)}: its descriptors differ from those of the"
                " device plugged before in this run (a swapped device is not the one approved)"
            )

    def _hint(self, snapshot: DeviceSnapshot) -> str | None:
        ident = (snapshot.device.id_vendor, snapshot.device.id_product)
        if not self.policy.empty or ident in self._hinted:
            return None
        self._hinted.add(ident)
        name = _ident(*ident)
        return f"admitted {name} with no --allow rule; --allow {name} pins this device"


__all__ = [
    "NO_RULES",
    "ClassRule",
    "DeviceGate",
    "DevicePolicy",
    "Verdict",
    "parse_class_rule",
]
