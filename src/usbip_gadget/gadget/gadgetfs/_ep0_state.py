"""What GadgetFS's ep0 machine remembers: its state between calls, and the work pending on
the outcome of the action it asked for last.

What the machine carries from one call to the next lives in ``Ep0State``, one frozen value
replaced whole on every change (the events read and not yet translated wait in a queue
beside it); the pending work says what the next outcome continues.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum, auto

from usbip_gadget._errors import GadgetError
from usbip_gadget.gadget.gadgetfs._ep0_actions import Failed, Outcome, Read, unexpected
from usbip_gadget.gadget.gadgetfs._ep0_events import GadgetFsEvent
from usbip_gadget.usb import InterfaceDescriptor, SetupPacket


class Next(Enum):
    """What the bridge's next call for events starts with."""

    READ = auto()  # the events read already, then ep0's
    CLOSE = auto()  # DISABLE was given for an unplug: the pumps stopped, close the files
    CLOSE_THEN_CONFIGURE = auto()  # DISABLE was given for SET_CONFIGURATION
    ACKNOWLEDGE = auto()  # ENABLE was given: SET_CONFIGURATION's status stage
    RESUME = auto()  # SUSPEND and SET_INTERFACE were given and answered


@dataclass(frozen=True, slots=True)
class Ep0State:
    """What ep0's handling carries from one call to the next, replaced whole on a change."""

    next: Next = Next.READ
    configuration: int = 0  # the bConfigurationValue CLOSE_THEN_CONFIGURE applies
    request: SetupPacket | None = None  # the SETUP the bridge answers
    out_data: bytes | None = None  # its OUT data, read as soon as the host sent it
    stale: bool = False  # the next SETUP read has failed for the host already
    # Interface → alternate setting whose endpoint files are open; empty: not configured.
    settings: Mapping[int, int] = field(default_factory=dict)


# ---------------------------------------------------------------- pending work


class Purpose(Enum):
    """What a read of ep0's events is for."""

    EVENTS = auto()  # the bridge's call: translate them
    PREFETCH = auto()  # queue them, each OUT request with its data
    CLAIM = auto()  # the first read after binding: queue them


@dataclass(frozen=True, slots=True)
class Reading:
    """Events read from ep0."""

    purpose: Purpose


@dataclass(frozen=True, slots=True)
class EarlyData:
    """The OUT data of a batch's last event, read right after it."""

    batch: tuple[GadgetFsEvent, ...]
    purpose: Purpose

    def completed(self, outcome: Outcome) -> tuple[GadgetFsEvent, ...]:
        """The batch, its last event with its data or its loss (or neither: not sent yet,
        so waited for later)."""
        if isinstance(outcome, Failed) and outcome.code == errno.EAGAIN:
            return self.batch
        return _with_data(self.batch, outcome)


@dataclass(frozen=True, slots=True)
class LateData:
    """The OUT data of the last event prefetched, waited for."""

    batch: tuple[GadgetFsEvent, ...]

    def completed(self, outcome: Outcome) -> tuple[GadgetFsEvent, ...]:
        """The batch, its last event with its data or its loss."""
        return _with_data(self.batch, outcome)


def _with_data(batch: tuple[GadgetFsEvent, ...], outcome: Outcome) -> tuple[GadgetFsEvent, ...]:
    match outcome:
        case Read(data):
            return (*batch[:-1], replace(batch[-1], data=data))
        case Failed():
            # EIDRM: the host went on, this request is lost and ep0 is in the next one's
            # SETUP, whose event cannot be read yet. EIO: its data stage failed. Either way
            # it is dropped without touching ep0 again.
            return (*batch[:-1], replace(batch[-1], lost=True))
    raise unexpected(outcome)


@dataclass(frozen=True, slots=True)
class Collecting:
    """The OUT data of the request being translated, waited for."""

    setup: SetupPacket


@dataclass(frozen=True, slots=True)
class Abandoning:
    """A stale request's SETUP state ended (it failed for the host already)."""

    setup: SetupPacket


@dataclass(frozen=True, slots=True)
class Closing:
    """Every endpoint file closed."""

    configure: int | None  # the configuration to apply next


@dataclass(frozen=True, slots=True)
class Configuring:
    """The endpoint files of the first of ``remaining`` (interface, setting 0) opened."""

    remaining: tuple[tuple[int, InterfaceDescriptor], ...]
    translating: bool  # for a request just read (else a follow-up of DISABLE)


@dataclass(frozen=True, slots=True)
class Acknowledging:
    """A status stage sent."""

    answer: bool  # the bridge's ``receive`` (else its call for events goes on)


@dataclass(frozen=True, slots=True)
class Switching:
    """SET_INTERFACE: the old setting's endpoint files closed, then the new one's opened."""

    interface: int
    setting: InterfaceDescriptor
    closed: bool  # the old setting's are closed already


@dataclass(frozen=True, slots=True)
class Stalling:
    """The bridge's request stalled."""

    error: GadgetError | None  # raised once stalled


@dataclass(frozen=True, slots=True)
class Replying:
    """An IN request's data sent."""


Job = (
    Reading
    | EarlyData
    | LateData
    | Collecting
    | Abandoning
    | Closing
    | Configuring
    | Acknowledging
    | Switching
    | Stalling
    | Replying
)


__all__ = [
    "Abandoning",
    "Acknowledging",
    "Closing",
    "Collecting",
    "Configuring",
    "EarlyData",
    "Ep0State",
    "Job",
    "LateData",
    "Next",
    "Purpose",
    "Reading",
    "Replying",
    "Stalling",
    "Switching",
]
