"""``usbip-gadget attach`` run as a user runs it: a foreground process, stopped with SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import _sysfs

BRIDGE_UDC = "dummy_udc.1"
# The CLI's imports alone take about 15 s in the guest (TCG runs Python some 40 times slower
# than the host), and a slower machine multiplies that: waits that include a CLI's start are long.
PLUG_TIMEOUT_S = 150.0
RUN_TIMEOUT_S = 240.0  # a CLI command run to its end
STOP_TIMEOUT_S = 15.0
UNPLUG_TIMEOUT_S = 10.0
CLI = Path(sys.executable).parent / "usbip-gadget"


@dataclass
class Bridged:
    """A running ``attach`` and the device the host on the bridge's bus made of the gadget."""

    process: subprocess.Popen[bytes]
    log: Path
    vid: int
    pid: int
    device: Path
    stop_seconds: float | None = None
    exit_code: int | None = None
    buses: frozenset[int] = field(default_factory=frozenset)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def find(self) -> Path | None:
        return _sysfs.configured_device(self.buses, self.vid, self.pid)


def start_cli(argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """``usbip-gadget ARGV...`` in the background, its output appended to ``log``."""
    with open(log, "ab") as sink:
        return subprocess.Popen([str(CLI), *argv], stdout=sink, stderr=subprocess.STDOUT)


def run_cli(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """``usbip-gadget ARGV...`` run to its end, its output captured as text."""
    return subprocess.run(
        [str(CLI), *argv], capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )


def terminate(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL if it is still there after STOP_TIMEOUT_S; its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@contextlib.contextmanager
def running(argv: Sequence[str], log: Path, record: str) -> Iterator[subprocess.Popen[bytes]]:
    """A CLI process for the block; SIGTERM must end it with 0. Its output is added to a
    failure, and kept in build/kernel/RECORD.log."""
    process = start_cli(argv, log)
    try:
        yield process
    except BaseException as exc:
        exc.add_note(f"{argv[0]}'s output:\n{log.read_text(errors='replace')}")
        raise
    finally:
        code = terminate(process)
        out = os.environ.get("KERNEL_TIER_OUT")
        if out:
            with open(Path(out) / f"{record}.log", "a") as kept:
                kept.write(f"--- {' '.join(argv)}\n{log.read_text(errors='replace')}")
    assert code == 0, f"{argv[0]} exited {code}: {log.read_text(errors='replace')}"


def start(
    server: str | None, busid: str | None, log: Path, extra: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """``attach SERVER BUSID`` on the bridge's controller; without them, ``extra`` says which
    device (``--config FILE``, ``--device``)."""
    where = [arg for arg in (server, busid) if arg is not None]
    return start_cli(["attach", *where, "--udc", BRIDGE_UDC, "--name", "bridge", *extra], log)


def wait_plugged(bridged: Bridged, timeout: float = PLUG_TIMEOUT_S) -> Path:
    def probe() -> Path | None:
        if bridged.process.poll() is not None:
            raise AssertionError(f"attach exited {bridged.process.returncode}: {bridged.text()}")
        return bridged.find()

    return _sysfs.wait_for(probe, timeout, f"the bridged {bridged.vid:04x}:{bridged.pid:04x}")


def stop(bridged: Bridged) -> None:
    """SIGTERM, and record how long the process took to exit and its exit code."""
    if bridged.process.poll() is None:
        began = time.monotonic()
        terminate(bridged.process)
        bridged.stop_seconds = time.monotonic() - began
    bridged.exit_code = bridged.process.returncode


@contextlib.contextmanager
def bridged(
    server: str | None, busid: str | None, vid: int, pid: int, log: Path, extra: Sequence[str] = ()
) -> Iterator[Bridged]:
    """``attach`` for the block, plugged into the second dummy UDC; stopped with SIGTERM."""
    process = start(server, busid, log, extra)
    state = Bridged(process, log, vid, pid, Path(), buses=_sysfs.udc_host_buses(BRIDGE_UDC))
    try:
        state.device = wait_plugged(state)
        yield state
    except BaseException as exc:
        stop(state)
        exc.add_note(f"attach's output:\n{state.text()}")
        raise
    finally:
        stop(state)
        out = os.environ.get("KERNEL_TIER_OUT")
        if out:  # kept for the record: build/kernel/attach.log
            with open(Path(out) / "attach.log", "a") as record:
                record.write(f"--- attach {server} {busid} {' '.join(extra)}\n{state.text()}")
    # The host side notices the unplug asynchronously (hub_wq); the block is over only once
    # nothing is left on the bridge's bus.
    _sysfs.wait_until(
        lambda: not _sysfs.usb_devices(state.buses),
        UNPLUG_TIMEOUT_S,
        f"the host on bus {sorted(state.buses)} seeing the bridge's unplug",
    )
