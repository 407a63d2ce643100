"""Native AIO on trio, exercised on regular files (whose requests complete at once)."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from usbip_gadget.gadget import _aio as _aio_module
from usbip_gadget.gadget._aio import Aio, AioUnavailable, open_aio


@pytest.fixture
def aio() -> Iterator[Aio]:
    context = open_aio()
    if context is None:
        pytest.fail("this machine's kernel must offer native AIO for the gadget backend")
    yield context
    context.close()


def _fd(path: Path, flags: int) -> int:
    return os.open(path, flags | os.O_CREAT, 0o600)


async def test_write_then_read_back(aio: Aio, tmp_path: Path) -> None:
    fd = _fd(tmp_path / "f", os.O_RDWR)
    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(aio.run)
                assert await aio.write(fd, b"hello, endpoint") == 15
                assert await aio.read(fd, 64) == b"hello, endpoint"
                assert await aio.read(fd, 5) == b"hello"
                assert await aio.write(fd, b"") == 0
                nursery.cancel_scope.cancel()
    finally:
        os.close(fd)


async def test_many_requests_in_flight_each_get_their_own_result(aio: Aio, tmp_path: Path) -> None:
    data = bytes(range(256)) * 16
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    results: dict[int, bytes] = {}

    async def read(length: int) -> None:
        results[length] = await aio.read(fd, length)

    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as outer:
                outer.start_soon(aio.run)
                async with trio.open_nursery() as nursery:
                    for length in range(1, 300):
                        nursery.start_soon(read, length)
                outer.cancel_scope.cancel()
    finally:
        os.close(fd)
    assert results == {length: data[:length] for length in range(1, 300)}


async def test_a_refused_submission_raises_oserror(aio: Aio, tmp_path: Path) -> None:
    fd = _fd(tmp_path / "f", os.O_WRONLY)
    os.close(fd)
    with trio.fail_after(5), pytest.raises(OSError, match="Bad file descriptor") as info:
        await aio.read(fd, 4)
    assert info.value.errno == errno.EBADF


async def test_a_failed_completion_raises_oserror(aio: Aio, tmp_path: Path) -> None:
    fd = _fd(tmp_path / "f", os.O_WRONLY)
    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(aio.run)
                with pytest.raises(OSError, match="Bad file descriptor") as info:
                    await aio.read(fd, 4)  # a write-only file: refused at submit or completion
                assert info.value.errno == errno.EBADF
                nursery.cancel_scope.cancel()
    finally:
        os.close(fd)


def test_close_twice_is_harmless(aio: Aio) -> None:
    aio.close()
    aio.close()


def test_no_table_for_the_machine_means_no_aio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("platform.machine", lambda: "sparc64")
    assert open_aio() is None
    with pytest.raises(AioUnavailable):
        Aio()


@pytest.mark.parametrize(
    ("machine", "pointer", "io_setup"),
    [
        ("x86_64", 8, 206),
        ("x86_64", 4, 245),  # i386 Python on an x86_64 kernel
        ("aarch64", 8, 0),
        ("aarch64", 4, 243),  # 32-bit Raspberry Pi OS on a 64-bit kernel
        ("armv7l", 4, 243),
        ("armv6l", 4, 243),  # Raspberry Pi Zero
    ],
)
def test_the_table_is_the_process_abi(
    monkeypatch: pytest.MonkeyPatch, machine: str, pointer: int, io_setup: int
) -> None:
    monkeypatch.setattr("platform.machine", lambda: machine)
    monkeypatch.setattr("ctypes.sizeof", lambda _type: pointer)
    assert _aio_module._syscall_numbers()[0] == io_setup


@pytest.mark.parametrize(("machine", "pointer"), [("armv7l", 8), ("sparc64", 8), ("mips", 4)])
def test_no_table_is_guessed(monkeypatch: pytest.MonkeyPatch, machine: str, pointer: int) -> None:
    monkeypatch.setattr("platform.machine", lambda: machine)
    monkeypatch.setattr("ctypes.sizeof", lambda _type: pointer)
    with pytest.raises(AioUnavailable):
        _aio_module._syscall_numbers()


# -- PacketRing: one-packet reads kept queued, taken as runs --------------------------------


async def test_a_ring_on_a_file_reads_every_slot_as_runs(aio: Aio, tmp_path: Path) -> None:
    # On a regular file every slot reads from offset 0 at once: full slots make one run up
    # to the ring's end, short ones a run each, an empty file a zero-length packet each.
    cases = {b"a" * 8: [b"a" * 32], b"abc": [b"abc"] * 4, b"": [b""] * 4}
    for content, expected in cases.items():
        (tmp_path / "f").write_bytes(content)
        fd = os.open(tmp_path / "f", os.O_RDONLY)
        try:
            with trio.fail_after(5):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(aio.run)
                    ring = aio.packet_ring(fd, 8, 4)
                    ring.start()
                    got: list[bytes] = []
                    while len(got) < len(expected) * 2:
                        got += await ring.take()  # the slots are requeued: they read again
                    ring.close()
                    nursery.cancel_scope.cancel()
        finally:
            os.close(fd)
        assert got[: len(expected)] == expected
        assert b"".join(got) == b"".join(expected) * (len(got) // len(expected))


class _StubContext:
    """What a ring needs of ``Aio``: submissions recorded, completions fed by the test."""

    _eventfd = 0

    def __init__(self) -> None:
        self.submitted: list[tuple[int, int]] = []
        self.forgotten = False

    def submit(self, iocbs: object, first: int, count: int) -> int:
        self.submitted.append((first, count))
        return count

    def cancel(self, iocb: object) -> None:
        pass

    def forget_ring(self, key: int) -> None:
        self.forgotten = True


def _complete(ring: _aio_module.PacketRing, slot: int, data: bytes, packet: int) -> None:
    ctypes.memmove(ring._base + slot * packet, data, len(data))
    ring.completed(slot, len(data))


async def test_ring_runs_end_at_short_packets_zlps_and_the_ring_end() -> None:
    stub = _StubContext()
    ring = _aio_module.PacketRing(stub, 3, 4, 6, 1 << 48)  # type: ignore[arg-type]
    ring.start()
    assert stub.submitted == [(0, 6)]
    for slot, data in enumerate([b"aaaa", b"bbbb", b"cc", b"", b"dddd", b"eeee"]):
        _complete(ring, slot, data, 4)
    with trio.fail_after(1):
        assert await ring.take() == [b"aaaabbbbcc", b"", b"ddddeeee"]
    assert stub.submitted[-1] == (0, 6)
    # Completions out of order are taken from the head only; the ring wraps.
    _complete(ring, 1, b"gggg", 4)
    _complete(ring, 0, b"ffff", 4)
    _complete(ring, 5, b"x", 4)
    with trio.fail_after(1):
        assert await ring.take() == [b"ffffgggg"]
    assert ring.discard() == 0
    _complete(ring, 2, b"h", 4)
    assert ring.discard() == 1
    ring.close()
    assert stub.forgotten is False  # slots still queued: their buffers must live on


async def test_a_failed_slot_raises_after_the_packets_before_it() -> None:
    stub = _StubContext()
    ring = _aio_module.PacketRing(stub, 3, 4, 4, 1 << 48)  # type: ignore[arg-type]
    ring.start()
    _complete(ring, 0, b"ab", 4)
    ring.completed(1, -errno.ESHUTDOWN)
    with trio.fail_after(1):
        assert await ring.take() == [b"ab"]
        with pytest.raises(OSError, match="shutdown") as info:
            await ring.take()
    assert info.value.errno == errno.ESHUTDOWN
