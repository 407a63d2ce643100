"""An open endpoint file of either kernel backend, as a ``GadgetEndpoint``.

FunctionFS's ``ep<N>`` files and GadgetFS's files named after the controller's endpoints take
the same I/O: a read or write moves one transfer, and I/O in the wrong direction halts the
endpoint (f_fs and inode.c both answer it with EBADMSG once the halt is set).
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import trio

from usbip_gadget._errors import EndpointShutdown, GadgetError
from usbip_gadget.gadget._aio import Aio, AioRequest, PacketRing
from usbip_gadget.gadget._backend import (
    PacketReader,
    QueuedWrite,
    one_read_at_a_time,
    write_on_wait,
)
from usbip_gadget.gadget._blocking import ThreadedFile
from usbip_gadget.gadget._kernel import SHUTDOWN_ERRNOS, in_thread
from usbip_gadget.usb import EndpointDescriptor


class EndpointFile:
    """One endpoint file replaying a remote endpoint: FunctionFS's ``ep<N>``, or GadgetFS's
    files named after the controller's endpoints (both take the same I/O, halt included).

    With ``aio`` the file is non-blocking and transfers are AIO requests; without, they are
    blocking calls in worker threads whose results outlive a cancelled caller (``_blocking``).
    """

    def __init__(
        self,
        fd: int,
        descriptor: EndpointDescriptor,
        path: Path,
        aio: Aio | None = None,
        *,
        release: Callable[[int], None] = os.close,
    ) -> None:
        self._fd = fd
        self._descriptor = descriptor
        self._path = path
        self._aio = aio
        self._threaded = ThreadedFile(fd) if aio is None else None
        self._release = release  # closes the descriptor (a model's close in tests)

    @property
    def descriptor(self) -> EndpointDescriptor:
        return self._descriptor

    async def read(self, length: int) -> bytes:
        try:
            if self._aio is not None:
                return await self._aio.read(self._fd, length)
            assert self._threaded is not None
            return await self._threaded.read(length)
        except OSError as exc:
            raise self._error(exc) from None

    async def write(self, data: bytes) -> None:
        try:
            if self._aio is not None:
                written = await self._aio.write(self._fd, bytes(data))
            else:
                assert self._threaded is not None
                written = await self._threaded.write(bytes(data))
        except OSError as exc:
            raise self._error(exc) from None
        if written != len(data):
            raise GadgetError(f"{self._path}: wrote {written} of {len(data)} bytes")

    def queue_write(self, data: bytes) -> QueuedWrite:
        if self._aio is None:
            return write_on_wait(self, data)
        try:
            return _AioWrite(self._aio, self._aio.start_write(self._fd, bytes(data)), self)
        except OSError as exc:
            return _Failed(self._error(exc))

    def packet_reader(self, limit: int) -> AbstractAsyncContextManager[PacketReader]:
        if self._aio is None:
            return one_read_at_a_time(self)
        return self._ring(self._aio, max(1, limit))

    @asynccontextmanager
    async def _ring(self, aio: Aio, count: int) -> AsyncIterator[PacketReader]:
        packet = max(1, self._descriptor.max_packet_size)
        ring = aio.packet_ring(self._fd, packet, count)
        try:
            try:
                ring.start()
            except OSError as exc:
                raise self._error(exc) from None
            yield _RingReader(ring, self)
        finally:
            ring.close()

    async def halt(self) -> None:
        # f_fs halts an endpoint on I/O in the wrong direction and answers EBADMSG. It does
        # not wait for the host, so on a non-blocking file it needs no thread.
        is_in = bool(self._descriptor.b_endpoint_address & 0x80)
        wrong_way: Callable[[], object] = (
            (lambda: os.read(self._fd, 1)) if is_in else (lambda: os.write(self._fd, b"\0"))
        )
        try:
            if self._aio is not None:
                await trio.lowlevel.checkpoint()
                wrong_way()
            else:
                await in_thread(wrong_way)
        except OSError as exc:
            if exc.errno == errno.EBADMSG:
                return
            raise self._error(exc, "cannot halt: ") from None
        raise GadgetError(f"{self._path}: the kernel did not halt the endpoint")

    async def aclose(self) -> None:
        """Close the file (GadgetFS disables the endpoint when it is released, which waits
        for calls still blocked on it: they are interrupted first, for a bounded time that
        cancellation does not cut short, so the file is always closed)."""
        if self._threaded is not None:
            await self._threaded.interrupt()
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            self._release(fd)

    def _error(self, exc: OSError, doing: str = "") -> GadgetError:
        # EAGAIN: a non-blocking file whose endpoint is not enabled (f_fs would wait for it).
        if exc.errno in SHUTDOWN_ERRNOS or exc.errno == errno.EAGAIN:
            return EndpointShutdown(f"{self._path}: endpoint disabled by the host")
        return GadgetError(f"{self._path}: {doing}{exc.strerror}")


class _AioWrite:
    """A write request submitted on an endpoint file (``EndpointFile.queue_write``)."""

    queued = True

    def __init__(self, aio: Aio, request: AioRequest, endpoint: EndpointFile) -> None:
        self._aio = aio
        self._request = request
        self._endpoint = endpoint

    async def wait(self) -> None:
        try:
            written = await self._aio.finish(self._request)
        except OSError as exc:
            raise self._endpoint._error(exc) from None
        length = self._request.iocb.aio_nbytes
        if written != length:
            raise GadgetError(f"{self._endpoint._path}: wrote {written} of {length} bytes")

    def cancel(self) -> None:
        self._aio.abandon(self._request)


class _Failed:
    """A write the kernel refused at once: waiting for it raises why."""

    queued = True

    def __init__(self, error: GadgetError) -> None:
        self._error = error

    async def wait(self) -> None:
        await trio.lowlevel.checkpoint()
        raise self._error

    def cancel(self) -> None:
        pass


class _RingReader:
    """A ``PacketReader`` over an AIO ``PacketRing``, with the endpoint's errors."""

    def __init__(self, ring: PacketRing, endpoint: EndpointFile) -> None:
        self._ring = ring
        self._endpoint = endpoint

    async def take(self) -> list[bytes]:
        try:
            return await self._ring.take()
        except OSError as exc:
            raise self._endpoint._error(exc) from None

    def discard(self) -> int:
        try:
            return self._ring.discard()
        except OSError as exc:
            raise self._endpoint._error(exc) from None
