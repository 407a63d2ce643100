"""Native AIO on trio, exercised on regular files (whose requests complete at once)."""

from __future__ import annotations

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
