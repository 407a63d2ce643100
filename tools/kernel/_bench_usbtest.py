"""usbtest, the kernel's host-side USB test driver, driven from user space.

    _bench_usbtest.py NODE TEST ITERATIONS LENGTH    one ioctl, its outcome on one line

``USBTEST_REQUEST`` reaches the driver bound to interface 0 of a usbfs node through
``USBDEVFS_IOCTL``. With ``modprobe usbtest pattern=1`` usbtest checks every byte it reads, and a
SourceSink gadget whose ``pattern`` is 1 checks every byte it receives, so a wrong byte fails the
ioctl with an errno. Some usbtest cases can leave a host controller in an uninterruptible wait:
each ioctl runs in a child process (this file, run as a script) that is abandoned after a
deadline. Only the standard library is imported, so the child needs no path set up.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# include/uapi/linux/usbdevice_fs.h: _IOWR('U', 18, struct usbdevfs_ioctl)
USBDEVFS_IOCTL = 0xC0105512
# struct usbdevfs_ioctl {int ifno; int ioctl_code; void *data;}: 16 bytes on x86_64. The code
# is packed unsigned: USBTEST_REQUEST has the top bit set.
IOCTL = struct.Struct("@iIP")
# drivers/usb/misc/usbtest.c: _IOWR('U', 100, struct usbtest_param_64)
USBTEST_REQUEST = 0xC0285564
# struct usbtest_param_64: test_num, iterations, length, vary, sglen (unsigned int), then the
# duration as struct timeval64 {s64 sec; s64 usec} (aligned to 8 bytes): 40 bytes.
PARAM = struct.Struct("=5I4x2q")
assert IOCTL.size == 16
assert PARAM.size == 40

INTERFACE = 0
TEST_BULK_WRITE, TEST_BULK_READ = 1, 2  # usbtest's test_num: simple_io on the bulk OUT / IN pipe
URB_LENGTH = 64 * 1024
ITERATIONS = 64
PROBE_ITERATIONS = 8
BUDGET_S = 90.0  # a run that would take longer is measured on its probe alone
DEADLINE_S = 120.0  # then the child is abandoned
KILL_GRACE_S = 5.0

_REASON_CHARS = 200


class UsbtestError(Exception):
    """A usbtest ioctl did not succeed; the message says which test and why, on one line."""


class UsbtestTimeout(UsbtestError):
    """A usbtest ioctl outlived its deadline; its process may still hold the device."""


@dataclass(frozen=True)
class Run:
    """One successful ioctl: ``iterations`` URBs of ``length`` bytes, with every byte checked."""

    test: int
    iterations: int
    length: int
    wall_s: float  # around the ioctl, in the child
    driver_s: float  # what usbtest measured and wrote back in the duration field

    @property
    def mb_per_s(self) -> float:
        """MB (10**6 bytes) per second of wall time."""
        return self.iterations * self.length / self.wall_s / 1e6


def run_test(
    node: Path,
    test: int,
    iterations: int,
    length: int = URB_LENGTH,
    deadline_s: float = DEADLINE_S,
) -> Run:
    """One usbtest ioctl in a child process; a child still running after ``deadline_s`` is
    killed, or left behind when the kernel holds it."""
    argv = [sys.executable, str(Path(__file__).resolve()), str(node), str(test)]
    child = subprocess.Popen(
        [*argv, str(iterations), str(length)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    try:
        out, _ = child.communicate(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        child.kill()
        fate = "killed"
        try:
            child.wait(KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            fate = f"process {child.pid} left behind in the kernel"
        if child.stdout is not None:
            child.stdout.close()
        raise UsbtestTimeout(f"test {test}: timed out after {deadline_s:g} s ({fate})") from None
    fields = out.split()
    if child.returncode == 0 and len(fields) == 4 and fields[0] == "ok" and fields[1] == "0":
        return Run(test, iterations, length, float(fields[2]), float(fields[3]))
    if child.returncode == 0 and len(fields) >= 4 and fields[0] == "errno":
        name, seconds, call, reason = fields[1], float(fields[2]), fields[3], " ".join(fields[4:])
        raise UsbtestError(
            f"test {test}: {call} failed with {name} ({reason or 'no message'})"
            f" after {seconds:.1f} s"
        )
    detail = " | ".join(line.strip() for line in out.splitlines() if line.strip()) or "no output"
    raise UsbtestError(
        f"test {test}: the child exited {child.returncode}: {detail[:_REASON_CHARS]}"
    )


def bulk_rate(node: Path, test: int) -> Run:
    """``test`` over ITERATIONS URBs of URB_LENGTH bytes, after a probe of PROBE_ITERATIONS.

    When the probe says the full run would take more than BUDGET_S, the probe is the figure
    (``Run.iterations`` tells): the same URBs, fewer of them, so MB/s stay comparable.
    """
    probe = run_test(node, test, PROBE_ITERATIONS)
    if probe.wall_s * ITERATIONS / PROBE_ITERATIONS > BUDGET_S:
        return probe
    return run_test(node, test, ITERATIONS)


def _errno_line(exc: OSError, wall: float, what: str) -> str:
    name = errno.errorcode.get(exc.errno or 0, f"errno{exc.errno}")
    return f"errno {name} {wall:.6f} {what} {exc.strerror}"


def _ioctl(node: str, test: int, iterations: int, length: int) -> str:
    """Runs the test; ``ok RESULT WALL DRIVER`` or ``errno NAME WALL open|ioctl MESSAGE``."""
    param = ctypes.create_string_buffer(
        PARAM.pack(test, iterations, length, 0, 0, 0, 0), PARAM.size
    )
    request = bytearray(IOCTL.pack(INTERFACE, USBTEST_REQUEST, ctypes.addressof(param)))
    try:
        fd = os.open(node, os.O_RDWR)
    except OSError as exc:
        return _errno_line(exc, 0.0, "open")
    try:
        start = time.perf_counter()
        try:
            result = fcntl.ioctl(fd, USBDEVFS_IOCTL, request)
        except OSError as exc:
            return _errno_line(exc, time.perf_counter() - start, "ioctl")
        wall = time.perf_counter() - start
    finally:
        os.close(fd)
    *_, seconds, microseconds = PARAM.unpack(param.raw)
    return f"ok {result} {wall:.6f} {seconds + microseconds / 1e6:.6f}"


def main(argv: list[str]) -> int:
    node, test, iterations, length = argv
    print(_ioctl(node, int(test), int(iterations), int(length)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
