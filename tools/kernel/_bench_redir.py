"""The bench's usbredir path: Debian's ``usbredirect`` exports the source disk and
``attach usbredir://`` replays it, measured beside the USB/IP paths."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from _bench_stack import (
    BRIDGE_UDC,
    LOOPBACK,
    SOURCE_VID_PID,
    bridge_argv,
    bridged,
    listening,
    stop,
)
from _bench_sysfs import COMMAND_TIMEOUT_S, BenchError
from tests.kernel._sysfs import wait_until

REDIR_PORT = 4000


@contextlib.contextmanager
def usbredirect(log: Path, vid_pid: str = SOURCE_VID_PID, port: int = REDIR_PORT) -> Iterator[str]:
    """``usbredirect --device VID:PID --as 127.0.0.1:PORT`` for the block (niced: 0.13 polls
    its socket without pause as a server); yields the usbredir:// address."""
    argv = ["nice", "-n", "10", "usbredirect", "--device", vid_pid, "--as", f"{LOOPBACK}:{port}"]
    with open(log, "ab") as sink:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        wait_until(
            lambda: process.poll() is not None or listening(port),
            COMMAND_TIMEOUT_S,
            f"usbredirect listening on port {port}",
        )
        if process.returncode is not None:
            raise BenchError(f"usbredirect exited {process.returncode} (see {log.name})")
        yield f"usbredir://{LOOPBACK}:{port}"
    finally:
        stop(process)


@contextlib.contextmanager
def redirected(log: Path) -> Iterator[Path]:
    """The source disk through usbredirect and ``attach usbredir://``; yields the bridged
    device on BRIDGE_UDC's bus."""
    with (
        usbredirect(log.with_name("usbredirect.log")) as url,
        bridged(bridge_argv(url, None), BRIDGE_UDC, log) as device,
    ):
        yield device
