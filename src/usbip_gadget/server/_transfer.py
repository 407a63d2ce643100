"""One URB carried out on a local device, in worker threads.

Control transfers run in one call. The standard requests that Linux usbip-host intercepts
(drivers/usb/usbip/stub_rx.c, ``tweak_special_requests``) are applied through the USB
stack instead, so that it knows about them: SET_CONFIGURATION, SET_INTERFACE,
CLEAR_FEATURE(ENDPOINT_HALT) and the hub class SET_FEATURE(PORT_RESET) that vhci-hcd sends
to reset the device. A successful one completes the URB with status 0, a failed one with
the stack's status.

Bulk and interrupt transfers run as a series of bounded calls (``ServeOptions.chunk``
bytes, ``slice_timeout`` seconds at most). Between two calls the URB may be stopped
(``stop()``: it was unlinked); it then completes with -ECONNRESET and what it moved so far.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import trio

from usbip_gadget.protocol import CmdSubmit, Direction, TransferFlags
from usbip_gadget.server._options import ServeOptions
from usbip_gadget.server._source import EndpointInfo, LocalDevice, Moved
from usbip_gadget.usb import FeatureSelector, Request, RequestType, SetupPacket

T = TypeVar("T")

ECONNRESET = -errno.ECONNRESET
ETIMEDOUT = -errno.ETIMEDOUT

#: bmRequestType of a hub class request to a port (USB 2.0 §11.24.2, USB_RT_PORT).
_PORT_REQUEST = RequestType.OUT | RequestType.CLASS | RequestType.OTHER
#: Hub port feature selector PORT_RESET (USB 2.0 §11.24.2, Table 11-17).
_PORT_RESET = 4

Special = Callable[[LocalDevice], int]


class Threads:
    """Runs blocking device calls in worker threads, at most ``limit`` at once."""

    def __init__(self, limit: int) -> None:
        self._limiter = trio.CapacityLimiter(limit)

    async def run(self, fn: Callable[[], T]) -> T:
        # Not abandoned on cancellation: a call in progress owns the device until it returns
        # (each is bounded), and what it moved must not be used after the device is closed.
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)


def standard_request(setup: SetupPacket) -> Special | None:
    """The device-source call that replaces this control request, if usbip-host tweaks it."""
    kind = (setup.bm_request_type, setup.b_request)
    if kind == (RequestType.ENDPOINT, Request.CLEAR_FEATURE):
        if setup.w_value == FeatureSelector.ENDPOINT_HALT:
            return lambda device: device.clear_halt(setup.w_index & 0xFF)
    elif kind == (RequestType.INTERFACE, Request.SET_INTERFACE):
        return lambda device: device.set_interface(setup.w_index & 0xFF, setup.w_value & 0xFF)
    elif kind == (RequestType.DEVICE, Request.SET_CONFIGURATION):
        return lambda device: device.set_configuration(setup.w_value & 0xFF)
    elif kind == (_PORT_REQUEST, Request.SET_FEATURE) and setup.w_value == _PORT_RESET:
        return lambda device: device.reset()
    return None


async def perform(
    device: LocalDevice,
    cmd: CmdSubmit,
    endpoint: EndpointInfo | None,
    *,
    threads: Threads,
    options: ServeOptions,
    stop: Callable[[], bool],
) -> Moved:
    """Carry out ``cmd`` on ``endpoint`` (None: the control endpoint) and say what moved."""
    if endpoint is None:
        return await _control(device, cmd, threads, options)
    if cmd.direction == Direction.OUT:
        return await _write(device, cmd, endpoint, _Run(threads, options, stop))
    moved = await _read(device, cmd, endpoint, _Run(threads, options, stop))
    short = moved.status == 0 and moved.length < cmd.transfer_buffer_length
    if short and cmd.transfer_flags & TransferFlags.SHORT_NOT_OK:
        return Moved.received(moved.data, -errno.EREMOTEIO)
    return moved


async def _control(
    device: LocalDevice, cmd: CmdSubmit, threads: Threads, options: ServeOptions
) -> Moved:
    setup = SetupPacket.parse(cmd.setup)
    if not _control_consistent(setup, cmd):
        return Moved(-errno.EINVAL)
    special = standard_request(setup)
    if special is not None:
        return Moved(await threads.run(partial(special, device)))
    call = partial(device.control, setup, cmd.data, options.control_timeout)
    return await threads.run(call)


def _control_consistent(setup: SetupPacket, cmd: CmdSubmit) -> bool:
    """The data stage agrees with the URB: direction and length (Linux requires it too)."""
    if setup.w_length == 0:
        return cmd.transfer_buffer_length == 0
    if setup.is_in != (cmd.direction == Direction.IN):
        return False
    if setup.is_in:
        return cmd.transfer_buffer_length >= setup.w_length
    return len(cmd.data) == setup.w_length


class _Run:
    """What the bounded loops share: the threads, the limits, and the unlink check."""

    def __init__(self, threads: Threads, options: ServeOptions, stop: Callable[[], bool]) -> None:
        self.threads = threads
        self.slice = options.slice_timeout
        self.chunk = options.chunk
        self.stop = stop

    def chunk_for(self, endpoint: EndpointInfo) -> int:
        """The most one call moves: whole packets, so that splitting changes nothing."""
        packet = max(1, endpoint.max_packet)
        return max(packet, self.chunk - self.chunk % packet)


async def _read(device: LocalDevice, cmd: CmdSubmit, endpoint: EndpointInfo, run: _Run) -> Moved:
    total, got = cmd.transfer_buffer_length, bytearray()
    chunk = run.chunk_for(endpoint)
    while True:
        want = min(total - len(got), chunk)
        call = partial(device.read, endpoint.address, want, run.slice)
        moved = await run.threads.run(call)
        got += moved.data
        if moved.status == ETIMEDOUT and _ended(moved.data, len(got), total, endpoint):
            return Moved.received(bytes(got), 0)  # it completed as the time ran out
        full_chunk = moved.status == 0 and len(moved.data) == want and len(got) < total
        if moved.status != ETIMEDOUT and not full_chunk:
            return Moved.received(bytes(got), moved.status)
        if run.stop():
            return Moved.received(bytes(got), ECONNRESET)


def _ended(data: bytes, got: int, total: int, endpoint: EndpointInfo) -> bool:
    """Whether a read that timed out had in fact finished: all taken, or a short packet."""
    return (got == total and total > 0) or len(data) % max(1, endpoint.max_packet) != 0


async def _write(device: LocalDevice, cmd: CmdSubmit, endpoint: EndpointInfo, run: _Run) -> Moved:
    moved = await _send(device, endpoint, cmd.data, run)
    packet = max(1, endpoint.max_packet)
    zero_packet = cmd.transfer_flags & TransferFlags.ZERO_PACKET and cmd.data
    if moved.status != 0 or not zero_packet or len(cmd.data) % packet:
        return moved
    # libusb's synchronous calls have no ZERO_PACKET flag: the zero-length packet goes alone.
    zlp = await _send(device, endpoint, b"", run)
    return Moved(zlp.status, length=moved.length)


async def _send(device: LocalDevice, endpoint: EndpointInfo, data: bytes, run: _Run) -> Moved:
    sent, chunk = 0, run.chunk_for(endpoint)
    while True:
        call = partial(device.write, endpoint.address, data[sent : sent + chunk], run.slice)
        moved = await run.threads.run(call)
        sent += moved.length
        # A timeout that came with everything sent completed as the time ran out (a ZLP,
        # which moves nothing, did not go out then).
        done = moved.status == 0 or (moved.status == ETIMEDOUT and len(data) > 0)
        if done and sent >= len(data):
            return Moved(0, length=sent)
        if moved.status not in (0, ETIMEDOUT):
            return Moved(moved.status, length=sent)
        if run.stop():
            return Moved(ECONNRESET, length=sent)
