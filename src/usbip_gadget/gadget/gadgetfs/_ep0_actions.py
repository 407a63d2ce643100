"""What the ep0 machine (``GadgetFsEp0``) asks its driver to do, and what it is told back.

The driver calls the machine's ``events`` when the bridge wants events, ``reply``,
``receive`` or ``stall`` when the bridge answers a SETUP, ``claim`` once after binding, and
``prefetch`` when a ``Deliver`` asks for it. Each returns an action. Every action but the
last three is one step on GadgetFS's files: the driver performs it and passes ``send`` one
outcome, ``Read`` (the bytes a read returned), ``Done`` (a write or a file operation
finished), ``Failed`` (the errno a call on ep0 failed with) or ``Refused`` (an endpoint file
could not be opened or configured), and ``send`` returns the next action. ``Deliver``,
``Answer`` and ``Idle`` end the call and take no outcome.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from usbip_gadget._errors import GadgetError
from usbip_gadget.gadget._events import Ep0Event
from usbip_gadget.gadget.gadgetfs._ep0_events import EVENTS_READ
from usbip_gadget.usb import InterfaceDescriptor

# ---------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class ReadEvents:
    """Read ep0's queued events (``length`` bytes at most), waiting until there are some."""

    length: int = EVENTS_READ


@dataclass(frozen=True, slots=True)
class ReadEp0:
    """One read of ep0 that does not wait: in a SETUP, its data stage (0 bytes acknowledge
    an OUT request, any read of an IN request stalls it)."""

    length: int


@dataclass(frozen=True, slots=True)
class CollectOutData:
    """An OUT request's data: read at once if the host has sent it, else waited for in a
    thread (a read GadgetFS completes even after a newer request), until the host's own
    control timeout, which fails with ECANCELED."""

    length: int


@dataclass(frozen=True, slots=True)
class WriteEp0:
    """One write on ep0: an IN request's data, or ``b""`` to stall an OUT request."""

    data: bytes


@dataclass(frozen=True, slots=True)
class OpenSetting:
    """Open and configure, in order, the endpoint files of an alternate setting's endpoints."""

    setting: InterfaceDescriptor


@dataclass(frozen=True, slots=True)
class CloseEndpoints:
    """Close the endpoint files of these remote endpoint addresses, in order (None: all)."""

    addresses: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class Deliver:
    """Give the bridge these events.

    ``prefetch``: ep0 is out of any request while the bridge forwards an OUT request's data,
    and the host may send more meanwhile; read ep0 in the background (``GadgetFsEp0.prefetch``)
    until the next call for events.
    """

    events: tuple[Ep0Event, ...]
    prefetch: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """The bridge's answer is complete; ``data`` is what ``receive`` returns."""

    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing more to read now (a claim or a prefetch is over)."""


Action = (
    ReadEvents
    | ReadEp0
    | CollectOutData
    | WriteEp0
    | OpenSetting
    | CloseEndpoints
    | Deliver
    | Answer
    | Idle
)
Finish = Deliver | Answer | Idle

# ---------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True)
class Read:
    """What a read of ep0 returned."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Done:
    """The write or file operation finished."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The call on ep0 failed with this errno (``strerror``: the error's own text, if any)."""

    code: int
    strerror: str = ""

    @property
    def reason(self) -> str:
        return self.strerror or os.strerror(self.code)

    @classmethod
    def of(cls, exc: OSError) -> Failed:
        """What a call that raised ``exc`` failed with (EIO if it says no errno)."""
        code = exc.errno if exc.errno is not None else errno.EIO
        return cls(code, exc.strerror or "")


@dataclass(frozen=True, slots=True)
class Refused:
    """An endpoint file could not be opened or configured: ``error`` says why
    (``HostGone`` when the host reset or left meanwhile)."""

    error: GadgetError


Outcome = Read | Done | Failed | Refused
DONE = Done()


def failure(outcome: Outcome) -> Failed | None:
    """How a call on ep0 failed; None if it succeeded."""
    if isinstance(outcome, Refused):
        raise unexpected(outcome)
    return outcome if isinstance(outcome, Failed) else None


def unexpected(outcome: Outcome) -> RuntimeError:
    """A driver's mistake: an outcome the pending action cannot have."""
    return RuntimeError(f"an outcome the pending action cannot have: {outcome!r}")


class HostGone(GadgetError):
    """The host reset or left while an endpoint was being configured."""


__all__ = [
    "DONE",
    "Action",
    "Answer",
    "CloseEndpoints",
    "CollectOutData",
    "Deliver",
    "Done",
    "Failed",
    "Finish",
    "HostGone",
    "Idle",
    "OpenSetting",
    "Outcome",
    "Read",
    "ReadEp0",
    "ReadEvents",
    "Refused",
    "WriteEp0",
    "failure",
    "unexpected",
]
