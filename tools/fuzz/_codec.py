"""Target 1: the USB/IP wire codec, both roles, and the two phases' parsers directly.

Each connection case builds real traffic with a peer ``Connection`` (so the peer's own rules
check it), then feeds it to the connection under test in random fragments: as it is, in
which case every message must come out unchanged and nothing may be raised; or mutated, or
replaced by random bytes, in which case only our protocol errors may escape. The host's
``bytes_wanted`` hint must never ask for more than a valid stream still holds (the client
waits for that many bytes with SO_RCVLOWAT). The parser cases check that a message parsed
from a buffer is parsed the same from exactly its own bytes, that no shorter prefix parses,
and that ``ret_length`` names the length ``parse_ret`` consumed.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Callable

from tools.fuzz._harness import Hang, Invariant, Target
from tools.fuzz._mutate import edge_u32, fragments, mutate, splice

from usbip_gadget import LocalProtocolError, RemoteProtocolError
from usbip_gadget.protocol import (
    CLOSED,
    DEFAULT_MAX_TRANSFER,
    NEED_DATA,
    CmdSubmit,
    CmdUnlink,
    Connection,
    DevlistReply,
    DevlistRequest,
    Direction,
    Event,
    ExportedDevice,
    ExportReply,
    ExportRequest,
    ImportReply,
    ImportRequest,
    InterfaceInfo,
    IsoPacket,
    Message,
    OpStatus,
    RetSubmit,
    RetUnlink,
    Role,
    SubmitShape,
    UnexportRequest,
    UsbDevice,
)
from usbip_gadget.protocol._op_codec import parse_op
from usbip_gadget.protocol._urb_codec import parse_cmd, parse_ret, ret_length

PROTOCOL_ERRORS = (RemoteProtocolError, LocalProtocolError)
_STATUSES = (0, 0, 0, -errno.EPIPE, -errno.ECONNRESET, -errno.ENODEV, -errno.EOVERFLOW, -71)


# ---------------------------------------------------------------- random messages


def _text(rng: random.Random, most: int) -> str:
    return "".join(rng.choice("abc-./019:é") for _ in range(rng.randrange(most)))


def random_device(rng: random.Random) -> UsbDevice:
    return UsbDevice(
        f"/sys/devices/{_text(rng, 100)}", _text(rng, 15), rng.randrange(1 << 32),
        rng.randrange(1 << 32), rng.randrange(8), rng.randrange(1 << 16), rng.randrange(1 << 16),
        rng.randrange(1 << 16), rng.randrange(256), rng.randrange(256), rng.randrange(256),
        rng.randrange(256), rng.randrange(256), rng.randrange(5),
    )  # fmt: skip


def _exported(rng: random.Random) -> ExportedDevice:
    device = random_device(rng)
    interfaces = tuple(
        InterfaceInfo(rng.randrange(256), rng.randrange(256), rng.randrange(256))
        for _ in range(device.b_num_interfaces)
    )
    return ExportedDevice(device, interfaces)


def _iso_layout(rng: random.Random, length: int) -> tuple[IsoPacket, ...]:
    count = rng.randint(1, 6)
    size = length // count
    return tuple(IsoPacket(n * size, size) for n in range(count))


def random_submit(rng: random.Random, seqnum: int) -> CmdSubmit:
    direction = rng.choice((Direction.IN, Direction.OUT))
    length = rng.choice((0, 1, 8, 31, 64, 512, rng.randrange(4096)))
    iso = _iso_layout(rng, length) if rng.random() < 0.15 else ()
    data = rng.randbytes(length) if direction == Direction.OUT else b""
    return CmdSubmit(
        seqnum, 0x10002, direction, rng.randrange(16), length, rng.randrange(1 << 10),
        rng.randbytes(8), data, rng.randrange(1 << 16), len(iso) if iso else -1,
        rng.randrange(16), iso,
    )  # fmt: skip


def random_reply(rng: random.Random, cmd: CmdSubmit) -> RetSubmit:
    status = rng.choice(_STATUSES)
    if cmd.iso_packets:
        packets = tuple(
            IsoPacket(p.offset, p.length, rng.randrange(p.length + 1), rng.choice(_STATUSES))
            for p in cmd.iso_packets
        )
        actual = sum(p.actual_length for p in packets)
        data = rng.randbytes(actual) if cmd.direction == Direction.IN else b""
        return RetSubmit(cmd.seqnum, status, actual, data, 0, len(packets), 0, packets)
    actual = rng.randrange(cmd.transfer_buffer_length + 1)
    data = rng.randbytes(actual) if cmd.direction == Direction.IN and actual else b""
    return RetSubmit(cmd.seqnum, status, actual, data, rng.randrange(1 << 16))


# ---------------------------------------------------------------- streams


def _drain(conn: Connection, limit: int) -> list[Event]:
    """Every event the buffered bytes give; more than ``limit`` would mean a loop."""
    events: list[Event] = []
    while (event := conn.next_event()) is not NEED_DATA:
        events.append(event)
        if event is CLOSED:
            break
        if len(events) > limit:
            raise Hang(f"next_event gave over {limit} events")
    return events


class Stream:
    """Traffic for a connection under test, how to bring one into the state it is for, and
    the events it must give, unmutated."""

    def __init__(self, role: Role) -> None:
        self.conn = Connection(role)
        self.prelude: list[Message | bytes] = []  # messages it sent, bytes it received
        self.wire: list[bytes] = []
        self.expected: list[Event] = []

    def send(self, peer: Connection, message: Message) -> None:
        """The connection under test sends ``message`` to ``peer`` (part of the prelude)."""
        peer.receive_data(self.conn.send(message))
        _drain(peer, 4)
        self.prelude.append(message)

    def receive(self, peer: Connection, message: Message) -> None:
        """``peer`` sends ``message`` to the connection under test (part of the prelude)."""
        data = peer.send(message)
        self.conn.receive_data(data)
        _drain(self.conn, 4)
        self.prelude.append(data)

    def add(self, peer: Connection, message: Message, *, stale: bool = False) -> bool:
        """Traffic: ``message`` from ``peer`` if its rules allow it now; whether they did."""
        try:
            self.wire.append(peer.send(message))
        except LocalProtocolError:
            return False
        if not stale:
            self.expected.append(message)
        return True

    def fresh(self) -> Connection:
        """A new connection brought through the prelude."""
        conn = Connection(self.conn.role)
        for item in self.prelude:
            if isinstance(item, bytes):
                conn.receive_data(item)
                _drain(conn, 4)
            else:
                conn.send(item)
        return conn


def _peer(role: Role) -> Connection:
    return Connection(Role.DEVICE if role is Role.HOST else Role.HOST)


_DEVICE_RECORD = UsbDevice("/d", "1-1", *([1] * 12))


def _host_op(rng: random.Random) -> Stream:
    stream, device = Stream(Role.HOST), _peer(Role.HOST)
    if rng.random() < 0.5:
        stream.send(device, DevlistRequest())
        status = rng.choice((0, 0, 1))
        devices = tuple(_exported(rng) for _ in range(rng.randrange(4))) if not status else ()
        stream.add(device, DevlistReply(devices, status))
    else:
        stream.send(device, ImportRequest(_text(rng, 15)))
        ok = rng.random() < 0.7
        reply = ImportReply(0, random_device(rng)) if ok else ImportReply(rng.randint(1, 3))
        stream.add(device, reply)
    return stream


def _host_urb(rng: random.Random) -> Stream:
    stream, device = Stream(Role.HOST), _peer(Role.HOST)
    stream.send(device, ImportRequest("1-1"))
    stream.receive(device, ImportReply(OpStatus.OK, _DEVICE_RECORD))
    cmds = [random_submit(rng, seq) for seq in range(1, rng.randint(2, 9))]
    for cmd in cmds:
        stream.send(device, cmd)
    answers: list[RetSubmit | RetUnlink] = [random_reply(rng, cmd) for cmd in cmds]
    targets: dict[int, int] = {}
    for seq, cmd in enumerate(rng.sample(cmds, rng.randrange(len(cmds))), start=100):
        stream.send(device, CmdUnlink(seq, 0x10002, cmd.seqnum))
        targets[seq] = cmd.seqnum
        answers.append(RetUnlink(seq, rng.choice((0, -errno.ECONNRESET))))
    rng.shuffle(answers)
    unlinked: set[int] = set()  # no RET_SUBMIT is owed once RET_UNLINK came: a late one is dropped
    for message in answers:
        stale = isinstance(message, RetSubmit) and message.seqnum in unlinked
        if stream.add(device, message, stale=stale) and isinstance(message, RetUnlink):
            unlinked.add(targets[message.seqnum])
    if rng.random() < 0.2:
        stream.add(device, UnexportRequest(random_device(rng)))
    return stream


def _device_urb(rng: random.Random) -> Stream:
    stream, host = Stream(Role.DEVICE), _peer(Role.DEVICE)
    stream.receive(host, ImportRequest("1-1"))
    stream.send(host, ImportReply(OpStatus.OK, _DEVICE_RECORD))
    for seq in range(1, rng.randint(2, 12)):
        if seq > 1 and rng.random() < 0.2:
            stream.add(host, CmdUnlink(seq, 0x10002, rng.randrange(1, seq)))
        else:
            stream.add(host, random_submit(rng, seq))
    return stream


def _device_op(rng: random.Random) -> Stream:
    stream, host = Stream(Role.DEVICE), _peer(Role.DEVICE)
    if rng.random() < 0.3:
        stream.add(host, DevlistRequest())
    elif rng.random() < 0.5:
        stream.add(host, ImportRequest(_text(rng, 15)))
    else:
        # The export direction: the device offers, the host answers, URBs follow.
        stream.send(host, ExportRequest(random_device(rng)))
        stream.add(host, ExportReply(0, 0))
        stream.add(host, random_submit(rng, 1))
    return stream


_Builder = Callable[[random.Random], Stream]
_POOL_SIZE = 256
_pools: dict[_Builder, list[Stream]] = {}


def _stream(rng: random.Random, builder: _Builder) -> Stream:
    """Mostly one of a pool of streams made once per process (from a fixed seed, so a case
    stays reproducible), else a new one: building traffic costs more than feeding it."""
    if rng.random() < 0.1:
        return builder(rng)
    pool = _pools.get(builder)
    if pool is None:
        made = random.Random(builder.__name__)
        pool = _pools[builder] = [builder(made) for _ in range(_POOL_SIZE)]
    return pool[rng.randrange(_POOL_SIZE)]


# ---------------------------------------------------------------- feeding


def _feed(rng: random.Random, conn: Connection, wire: bytes, *, valid: bool) -> list[Event]:
    events: list[Event] = []
    fed = 0
    for piece in fragments(rng, wire):
        conn.receive_data(piece)
        fed += len(piece)
        new = _drain(conn, len(wire) // 8 + 2)
        events += new
        if valid and fed < len(wire) and conn.bytes_wanted() > len(wire) - fed:
            raise Invariant(f"bytes_wanted {conn.bytes_wanted()} > {len(wire) - fed} to come")
        _answer_some(rng, conn, new)
    if rng.random() < 0.3:
        conn.receive_data(b"")
        events += _drain(conn, 2)
    return events


def _answer_some(rng: random.Random, conn: Connection, events: list[Event]) -> None:
    """The device side answers what it received now and then, as a server does."""
    if conn.role is not Role.DEVICE or not events or rng.random() < 0.5:
        return
    match events[-1]:
        case ImportRequest():
            conn.send(ImportReply(0, _DEVICE_RECORD))
        case DevlistRequest():
            conn.send(DevlistReply())
        case CmdSubmit(seqnum=seqnum):
            conn.send(RetSubmit(seqnum, -errno.EPIPE))
        case ExportReply():
            conn.send(UnexportRequest(_DEVICE_RECORD))


def _connection_case(rng: random.Random, builders: list[_Builder]) -> None:
    stream = _stream(rng, rng.choice(builders))
    wire = b"".join(stream.wire)
    roll = rng.random()
    if roll < 0.25:
        events = _feed(rng, stream.fresh(), wire, valid=True)
        got = [e for e in events if e is not CLOSED]
        if got != stream.expected:
            raise Invariant(f"valid traffic gave {len(got)} events, not {len(stream.expected)}")
        return
    if roll < 0.85:
        wire = mutate(rng, wire, most=rng.choice((1, 2, 4, 8)))
    elif roll < 0.95:
        wire = splice(rng, wire, rng.randbytes(rng.randrange(400)))
    else:
        wire = rng.randbytes(rng.randrange(600))
    _feed(rng, stream.fresh(), wire, valid=False)


def host_case(rng: random.Random) -> None:
    _connection_case(rng, [_host_op, _host_urb, _host_urb])


def device_case(rng: random.Random) -> None:
    _connection_case(rng, [_device_op, _device_urb, _device_urb])


# ---------------------------------------------------------------- parsers


def _seed_bytes(rng: random.Random, device_side: bool) -> bytes:
    stream = _stream(
        rng, rng.choice([_device_op, _device_urb] if device_side else [_host_op, _host_urb])
    )
    wire = b"".join(stream.wire)
    return mutate(rng, wire, most=rng.choice((1, 3, 6))) if rng.random() < 0.8 else wire


def _check_prefixes(
    rng: random.Random, data: bytes, parse: Callable[[bytes], tuple[Message, int] | None]
) -> None:
    result = parse(data)
    if result is None:
        return
    consumed = result[1]
    if not 0 < consumed <= len(data):
        raise Invariant(f"consumed {consumed} of {len(data)} bytes")
    if parse(data[:consumed]) != result:
        raise Invariant("the message parses differently from its own bytes")
    if parse(data[: rng.randrange(consumed)]) is not None:
        raise Invariant("a prefix of the message parsed")


def op_parser_case(rng: random.Random) -> None:
    data = _seed_bytes(rng, rng.random() < 0.5) if rng.random() < 0.9 else rng.randbytes(400)
    _check_prefixes(rng, data, parse_op)


def _shapes(rng: random.Random) -> Callable[[int], SubmitShape]:
    table = {
        seq: SubmitShape(
            rng.choice((Direction.IN, Direction.OUT)),
            rng.choice((0, 8, 64, 512, rng.randrange(4096))),
            rng.choice((-1, -1, rng.randint(1, 8), edge_u32(rng) - (1 << 31))),
        )
        for seq in range(1, 12)
    }

    def shape_of(seqnum: int) -> SubmitShape:
        shape = table.get(seqnum)
        if shape is None:
            raise RemoteProtocolError(f"unknown seqnum {seqnum}")
        return shape

    return shape_of


def urb_parser_case(rng: random.Random) -> None:
    device_side = rng.random() < 0.5
    data = _seed_bytes(rng, device_side) if rng.random() < 0.9 else rng.randbytes(300)
    if device_side:
        limit = rng.choice((DEFAULT_MAX_TRANSFER, 4096, 64, 0))
        _check_prefixes(rng, data, lambda d: parse_cmd(d, max_transfer=limit))
        return
    shape_of = _shapes(rng)
    _check_prefixes(rng, data, lambda d: parse_ret(d, shape_of))
    parsed = parse_ret(data, shape_of)
    if parsed is not None and ret_length(data, shape_of) != parsed[1]:
        raise Invariant(f"ret_length {ret_length(data, shape_of)} but {parsed[1]} consumed")


TARGETS = [
    Target("codec-host", host_case, PROTOCOL_ERRORS, 0.28),
    Target("codec-device", device_case, PROTOCOL_ERRORS, 0.22),
    Target("codec-op-parser", op_parser_case, PROTOCOL_ERRORS, 0.12),
    Target("codec-urb-parser", urb_parser_case, PROTOCOL_ERRORS, 0.16),
]
