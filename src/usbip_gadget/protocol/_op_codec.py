"""The op phase on the wire: OP_REQ/OP_REP messages and the 312-byte device record.

Parsers take a buffer and return ``(message, consumed)`` or ``None`` when more bytes are
needed; they never consume partially. Every length and count from the wire is checked
before it is used; a violation raises ``RemoteProtocolError``. Builders check what we
are about to send and raise ``LocalProtocolError``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from usbip_gadget._errors import LocalProtocolError, RemoteProtocolError
from usbip_gadget.protocol._constants import (
    DEVICE_RECORD_SIZE,
    MAX_DEVLIST_DEVICES,
    OP_HEADER_SIZE,
    USBIP_VERSION,
    OpCode,
    OpStatus,
)
from usbip_gadget.protocol._messages import (
    DevlistReply,
    DevlistRequest,
    ExportedDevice,
    ExportReply,
    ExportRequest,
    ImportReply,
    ImportRequest,
    InterfaceInfo,
    OpMessage,
    UnexportReply,
    UnexportRequest,
    UsbDevice,
)
from usbip_gadget.protocol._reader import Reader, Short

_OP_HEADER = struct.Struct(">HHI")
_DEVICE = struct.Struct(">256s32sIIIHHHBBBBBB")
_INTERFACE = struct.Struct(">BBBx")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")

assert _DEVICE.size == DEVICE_RECORD_SIZE


# ---------------------------------------------------------------- strings and records


def _cstring(raw: bytes, what: str) -> str:
    end = raw.find(b"\0")
    if end < 0:
        raise RemoteProtocolError(f"{what} is not NUL-terminated")
    try:
        return raw[:end].decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"{what} is not valid UTF-8") from None


def _fixed_string(text: str, size: int, what: str) -> bytes:
    raw = text.encode("utf-8")
    if b"\0" in raw or len(raw) >= size:
        raise LocalProtocolError(f"{what} {text!r} does not fit in {size - 1} bytes")
    return raw.ljust(size, b"\0")


def _pack_device(dev: UsbDevice) -> bytes:
    try:
        return _DEVICE.pack(
            _fixed_string(dev.path, 256, "path"),
            _fixed_string(dev.busid, 32, "busid"),
            dev.busnum,
            dev.devnum,
            dev.speed,
            dev.id_vendor,
            dev.id_product,
            dev.bcd_device,
            dev.b_device_class,
            dev.b_device_sub_class,
            dev.b_device_protocol,
            dev.b_configuration_value,
            dev.b_num_configurations,
            dev.b_num_interfaces,
        )
    except struct.error as exc:
        raise LocalProtocolError(f"device record field out of range: {exc}") from None


def _parse_device(reader: Reader) -> UsbDevice:
    path, busid, *numbers = reader.unpack(_DEVICE)
    return UsbDevice(_cstring(path, "path"), _cstring(busid, "busid"), *numbers)


# ---------------------------------------------------------------- op phase


def pack_op(message: OpMessage) -> bytes:
    """The bytes of an op-phase message (both directions)."""
    match message:
        case DevlistRequest():
            return _op_header(OpCode.REQ_DEVLIST, 0)
        case DevlistReply(devices=devices, status=status):
            return _op_header(OpCode.REP_DEVLIST, status) + (
                _pack_devlist(devices) if status == OpStatus.OK else b""
            )
        case ImportRequest(busid=busid):
            return _op_header(OpCode.REQ_IMPORT, 0) + _fixed_string(busid, 32, "busid")
        case ImportReply(status=status, device=device):
            if (status == OpStatus.OK) != (device is not None):
                raise LocalProtocolError("OP_REP_IMPORT carries a device exactly when status is 0")
            body = _pack_device(device) if device is not None else b""
            return _op_header(OpCode.REP_IMPORT, status) + body
        case ExportRequest(device=device):
            return _op_header(OpCode.REQ_EXPORT, 0) + _pack_device(device)
        case UnexportRequest(device=device):
            return _op_header(OpCode.REQ_UNEXPORT, 0) + _pack_device(device)
        case ExportReply(status=status, returncode=rc):
            return _op_header(OpCode.REP_EXPORT, status) + _pack_i32(rc)
        case UnexportReply(status=status, returncode=rc):
            return _op_header(OpCode.REP_UNEXPORT, status) + _pack_i32(rc)
    raise LocalProtocolError(f"not an op message: {message!r}")


def _op_header(code: OpCode, status: int) -> bytes:
    try:
        return _OP_HEADER.pack(USBIP_VERSION, code, status)
    except struct.error:
        raise LocalProtocolError(f"op status {status} out of range") from None


def _pack_i32(value: int) -> bytes:
    try:
        return _I32.pack(value)
    except struct.error:
        raise LocalProtocolError(f"return code {value} out of range") from None


def _pack_devlist(devices: Sequence[ExportedDevice]) -> bytes:
    parts = [_U32.pack(len(devices))]
    for entry in devices:
        if len(entry.interfaces) != entry.device.b_num_interfaces:
            raise LocalProtocolError(
                f"{entry.device.busid}: bNumInterfaces is {entry.device.b_num_interfaces} "
                f"but {len(entry.interfaces)} interfaces are listed"
            )
        parts.append(_pack_device(entry.device))
        parts.extend(
            _INTERFACE.pack(i.b_interface_class, i.b_interface_sub_class, i.b_interface_protocol)
            for i in entry.interfaces
        )
    return b"".join(parts)


def peek_op_code(data: bytes | bytearray | memoryview) -> OpCode | None:
    """The op code of the message at the start of ``data`` (None: need more bytes)."""
    if len(data) < OP_HEADER_SIZE:
        return None
    version, code, _status = _OP_HEADER.unpack(data[:OP_HEADER_SIZE])
    if version != USBIP_VERSION:
        raise RemoteProtocolError(f"unsupported USB/IP version 0x{version:04x}")
    try:
        return OpCode(code)
    except ValueError:
        raise RemoteProtocolError(f"unknown op code 0x{code:04x}") from None


def parse_op(data: bytes | bytearray | memoryview) -> tuple[OpMessage, int] | None:
    """Parse one op-phase message from the start of ``data``."""
    code = peek_op_code(data)
    if code is None:
        return None
    reader = Reader(data)
    _version, _code, status = reader.unpack(_OP_HEADER)
    try:
        message = _OP_BODY[code](reader, status)
    except Short:
        return None
    return message, reader.pos


def _body_devlist(reader: Reader, status: int) -> OpMessage:
    if status != OpStatus.OK:
        return DevlistReply(status=status)
    count = reader.u32()
    if count > MAX_DEVLIST_DEVICES:
        raise RemoteProtocolError(f"device list claims {count} devices")
    devices = []
    for _ in range(count):
        device = _parse_device(reader)
        interfaces = tuple(
            InterfaceInfo(*reader.unpack(_INTERFACE)) for _ in range(device.b_num_interfaces)
        )
        devices.append(ExportedDevice(device, interfaces))
    return DevlistReply(tuple(devices), status)


def _body_import_reply(reader: Reader, status: int) -> OpMessage:
    if status != OpStatus.OK:
        return ImportReply(status)
    return ImportReply(status, _parse_device(reader))


def _body_import_request(reader: Reader, _status: int) -> OpMessage:
    return ImportRequest(_cstring(bytes(reader.take(32)), "busid"))


_OP_BODY: dict[OpCode, Callable[[Reader, int], OpMessage]] = {
    OpCode.REQ_DEVLIST: lambda _r, _s: DevlistRequest(),
    OpCode.REP_DEVLIST: _body_devlist,
    OpCode.REQ_IMPORT: _body_import_request,
    OpCode.REP_IMPORT: _body_import_reply,
    OpCode.REQ_EXPORT: lambda r, _s: ExportRequest(_parse_device(r)),
    OpCode.REQ_UNEXPORT: lambda r, _s: UnexportRequest(_parse_device(r)),
    OpCode.REP_EXPORT: lambda r, s: ExportReply(s, _I32.unpack(r.take(4))[0]),
    OpCode.REP_UNEXPORT: lambda r, s: UnexportReply(s, _I32.unpack(r.take(4))[0]),
}
