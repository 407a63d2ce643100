"""A fast USB/IP server for ``make bench-fast``: answers every URB at once, in batches.

It stands for a server that costs the bridge nothing to wait for (Linux ``usbip-host`` in the
kernel answers a URB in a few microseconds): plain blocking sockets, the op phase through the
project's codec, the URB phase through ``struct`` alone. Each receive is answered with one
send holding a reply to every command it completed. IN URBs come back full, OUT URBs are
taken whole, control IN requests get ``wLength`` bytes, unlinks find their URB answered.
"""

from __future__ import annotations

import socket
import struct
from multiprocessing.connection import Connection as Pipe

from usbip_gadget.protocol import (
    NEED_DATA,
    NO_ISO,
    Connection,
    ImportReply,
    ImportRequest,
    Role,
    UsbDevice,
)

_HEADER = struct.Struct(">IIIIIIiiii8s")  # CMD_SUBMIT: basic header + cmd_submit
_RET = struct.Struct(">IIIIIiiiii8x")  # RET_SUBMIT / RET_UNLINK: basic header + status...
_CMD_SUBMIT, _CMD_UNLINK, _RET_SUBMIT, _RET_UNLINK = 1, 2, 3, 4
_DIR_OUT = 0
_DATA = bytes(range(256)) * 256


def run_fast_server(report: Pipe, busid: str, record: UsbDevice) -> None:
    """Serve ``record`` as ``busid`` on a free port of 127.0.0.1; the port goes to ``report``."""
    listener = socket.create_server(("127.0.0.1", 0))
    report.send(listener.getsockname()[1])
    while True:
        sock, _ = listener.accept()
        with sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rest = _import(sock, busid, record)
            if rest is not None:
                _serve_urbs(sock, bytearray(rest))


def _import(sock: socket.socket, busid: str, record: UsbDevice) -> bytes | None:
    conn = Connection(Role.DEVICE)
    while (event := conn.next_event()) is NEED_DATA:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        conn.receive_data(chunk)
    if not isinstance(event, ImportRequest) or event.busid != busid:
        return None
    sock.sendall(conn.send(ImportReply(0, record)))
    return b""


def _serve_urbs(sock: socket.socket, buffer: bytearray) -> None:
    while chunk := sock.recv(1 << 20):
        buffer += chunk
        replies: list[bytes] = []
        at = 0
        while len(buffer) - at >= _HEADER.size:
            command, seqnum, _devid, direction, ep, _flags, length, *_, setup = _HEADER.unpack_from(
                buffer, at
            )
            payload = length if command == _CMD_SUBMIT and direction == _DIR_OUT else 0
            if len(buffer) - at < _HEADER.size + payload:
                break
            at += _HEADER.size + payload
            replies.append(_answer(command, seqnum, direction, ep, length, setup))
        del buffer[:at]
        if replies:
            sock.sendall(b"".join(replies))


def _answer(command: int, seqnum: int, direction: int, ep: int, length: int, setup: bytes) -> bytes:
    if command == _CMD_UNLINK:  # every URB is answered at once: it completed already
        return _RET.pack(_RET_UNLINK, seqnum, 0, 0, 0, 0, 0, 0, 0, 0)
    if direction == _DIR_OUT:
        return _RET.pack(_RET_SUBMIT, seqnum, 0, 0, 0, 0, length, 0, NO_ISO, 0)
    if ep == 0:
        length = min(length, struct.unpack_from("<H", setup, 6)[0])
    head = _RET.pack(_RET_SUBMIT, seqnum, 0, 0, 0, 0, length, 0, NO_ISO, 0)
    return head + _DATA[:length]
