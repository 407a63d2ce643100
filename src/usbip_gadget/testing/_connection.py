"""The device end of one USB/IP connection, for the test doubles that serve a device.

``DeviceConnection`` reads messages with our own sans-I/O ``Connection(Role.DEVICE)``, logs
each with its trio time (``received``) and hands it to ``_dispatch``; ``send`` answers (and
logs, ``sent``). ``wait_until`` waits, without polling, for a condition on that state;
``pause`` and ``resume`` stop and restart reading, as a server that falls behind does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import trio

from usbip_gadget.protocol import (
    CLOSED,
    NEED_DATA,
    CmdSubmit,
    CmdUnlink,
    Connection,
    Direction,
    Message,
    RetSubmit,
    Role,
    Sentinel,
)


@dataclass(frozen=True)
class Logged:
    """A message the server received or sent, and the trio time it did."""

    time: float
    message: Message


class DeviceConnection:
    """Serves one connection; subclasses answer each message in ``_dispatch``."""

    def __init__(self) -> None:
        self.received: list[Logged] = []
        self.sent: list[Logged] = []
        self._conn = Connection(Role.DEVICE)
        self._outbox, self._outgoing = trio.open_memory_channel[bytes](math.inf)
        self._changed = trio.lowlevel.ParkingLot()
        self._stream: trio.abc.Stream | None = None
        self._reading = trio.Event()
        self._reading.set()
        self._receiving = trio.CancelScope()

    def _dispatch(self, message: Message) -> None:
        raise NotImplementedError

    async def serve(self, stream: trio.abc.Stream) -> None:
        """Answer the import, then URBs, until the connection ends."""
        self._stream = stream
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write, stream)
            await self._read(stream)
            nursery.cancel_scope.cancel()

    async def _read(self, stream: trio.abc.Stream) -> None:
        try:
            while True:
                event = self._conn.next_event()
                if event is NEED_DATA:
                    await self._reading.wait()
                    if not self._reading.is_set():  # paused while this task was waking
                        continue
                    with trio.CancelScope() as self._receiving:  # pause() cancels it
                        self._conn.receive_data(await stream.receive_some(65536))
                    continue
                if event is CLOSED:
                    return
                assert not isinstance(event, Sentinel)
                self.received.append(Logged(trio.current_time(), event))
                self._dispatch(event)
                self._changed.unpark_all()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _write(self, stream: trio.abc.Stream) -> None:
        async for data in self._outgoing:
            try:
                await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def close(self) -> None:
        """Close the connection, as a server that goes away does."""
        assert self._stream is not None
        await self._stream.aclose()

    def pause(self) -> None:
        """Stop reading from the connection (with a lockstep stream, the client's sends block)."""
        self._reading = trio.Event()
        self._receiving.cancel()

    def resume(self) -> None:
        self._reading.set()

    def send(self, message: Message) -> None:
        """Answer (checked by our own protocol rules, unless the test means to break them)."""
        self._outbox.send_nowait(self._conn.send(message))
        self.sent.append(Logged(trio.current_time(), message))
        self._changed.unpark_all()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds; it is checked after every change."""
        while not condition():
            await self._changed.park()

    # -- queries ---------------------------------------------------------------------------

    def submits(self, address: int | None = None) -> list[CmdSubmit]:
        """The CMD_SUBMITs received (on endpoint ``address`` if given), in order."""
        found = [m.message for m in self.received if isinstance(m.message, CmdSubmit)]
        if address is None:
            return found
        return [cmd for cmd in found if endpoint_address(cmd) == address]

    def unlinks(self) -> list[CmdUnlink]:
        return [m.message for m in self.received if isinstance(m.message, CmdUnlink)]

    def answered(self, seqnum: int) -> bool:
        """Whether a RET_SUBMIT for ``seqnum`` was sent."""
        return any(
            isinstance(m.message, RetSubmit) and m.message.seqnum == seqnum for m in self.sent
        )


def endpoint_address(cmd: CmdSubmit) -> int:
    """The endpoint address a CMD_SUBMIT names; 0 for control URBs either way."""
    return cmd.ep | (0x80 if cmd.direction == Direction.IN and cmd.ep else 0)


__all__ = ["DeviceConnection", "Logged", "endpoint_address"]
