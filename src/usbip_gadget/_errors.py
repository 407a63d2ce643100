"""The exception hierarchy: one root, every failure the user can see below it."""

from __future__ import annotations

import errno
from collections.abc import Sequence


class UsbipGadgetError(Exception):
    """Root of every error this package raises on purpose.

    ``hint`` is an optional sentence telling the user what to check.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def one_line(self) -> str:
        """The message as shown on stderr, with its hint."""
        text = str(self) or type(self).__name__
        return f"{text} ({self.hint})" if self.hint else text


class ProtocolError(UsbipGadgetError):
    """A USB/IP or USB protocol rule was broken."""


class LocalProtocolError(ProtocolError):
    """We were asked to build something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow (malformed, oversized, unexpected)."""


class DescriptorError(RemoteProtocolError):
    """Descriptor bytes from the device are malformed (bad bLength, type, total length, counts)."""


class TransportError(UsbipGadgetError):
    """The connection could not be made or broke."""


class UsbipTimeout(UsbipGadgetError):
    """An operation did not complete in time."""


class ImportRefused(UsbipGadgetError):
    """The peer declined an import or export (not exported, busy, or gone).

    ``status`` is the op status the peer answered (``None`` when it answered no status, e.g.
    it closed the connection) and ``reason`` its words, without the device or peer named.
    """

    def __init__(self, message: str, *, reason: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


class NoMatchingDevice(ImportRefused):
    """No exported device matches (yet): with ``--reconnect``, ``attach`` waits for one."""


class AmbiguousMatch(UsbipGadgetError):
    """Several exported devices match and nothing tells them apart."""


class SnapshotError(UsbipGadgetError):
    """A saved device snapshot (JSON) is malformed or disagrees with itself."""


class ExportError(UsbipGadgetError):
    """A local device could not be listed or claimed.

    ``gone`` says the device is no longer there (the import is refused with NODEV rather
    than DEV_ERR).
    """

    def __init__(self, message: str, *, hint: str | None = None, gone: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.gone = gone


class DeviceRefused(UsbipGadgetError):
    """The device policy (``--allow``, ``--allow-class``) does not let this device be plugged."""


class GadgetError(UsbipGadgetError):
    """The local USB gadget could not be built, bound or served."""


class FunctionFsUnsupported(GadgetError):
    """The configuration uses something FunctionFS cannot express; ``reasons`` says what."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = tuple(reasons)
        super().__init__(
            "FunctionFS cannot express this configuration: " + "; ".join(self.reasons),
            hint="GadgetFS, which serves descriptors verbatim, may replay it instead",
        )


class GadgetFsUnsupported(GadgetError):
    """GadgetFS cannot replay this device (``reasons`` says why)."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = tuple(reasons)
        super().__init__("GadgetFS cannot replay this device: " + "; ".join(self.reasons))


class NoBackend(GadgetError):
    """Neither kernel interface can replay the device."""


class EndpointsExhausted(GadgetError):
    """The controller could not give a function all the endpoints it asked for at bind."""


class EndpointShutdown(GadgetError):
    """The host disabled the endpoint (configuration change, reset or unplug) mid-transfer."""


class TemplateError(GadgetError):
    """A gadget template that cannot be used: the message names the template and the key."""


class ServiceError(UsbipGadgetError):
    """The service units could not be put in place."""


class TransferError(UsbipGadgetError):
    """A URB completed with a non-zero status (a negated Linux errno on the wire)."""

    errno_value: int = 0

    def __init__(self, status: int, message: str | None = None) -> None:
        self.status = status
        name = errno.errorcode.get(-status, str(status))
        super().__init__(message or f"transfer failed: {name} ({status})")


class Stall(TransferError):
    """-EPIPE: the endpoint is halted (or a control request was refused)."""

    errno_value = errno.EPIPE


class Unlinked(TransferError):
    """-ECONNRESET (or -ENOENT): the URB was unlinked before it completed."""

    errno_value = errno.ECONNRESET


class DeviceGone(TransferError):
    """-ENODEV / -ESHUTDOWN / -EPROTO: the device is no longer there or not answering."""

    errno_value = errno.ENODEV


class Overflow(TransferError):
    """-EOVERFLOW: the device sent more data than was asked for (babble)."""

    errno_value = errno.EOVERFLOW


_BY_ERRNO: dict[int, type[TransferError]] = {
    errno.EPIPE: Stall,
    errno.ECONNRESET: Unlinked,
    errno.ENOENT: Unlinked,
    errno.ENODEV: DeviceGone,
    errno.ESHUTDOWN: DeviceGone,
    errno.EPROTO: DeviceGone,
    errno.EOVERFLOW: Overflow,
}


def transfer_error(status: int) -> TransferError:
    """The exception for a RET_SUBMIT status (negative errno; positive values are tolerated)."""
    cls = _BY_ERRNO.get(abs(status), TransferError)
    return cls(-abs(status))
