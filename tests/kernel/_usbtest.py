"""usbtest, the kernel's host-side USB test driver, driven from user space.

    _usbtest.py NODE TEST ITERATIONS LENGTH VARY SGLEN    one ioctl, its outcome on one line

``USBTEST_REQUEST`` reaches the driver bound to interface 0 of a usbfs node through
``USBDEVFS_IOCTL``. With ``modprobe usbtest pattern=1`` usbtest checks every byte it reads, and a
SourceSink gadget whose ``pattern`` is 1 checks every byte it receives, so a wrong byte fails the
ioctl with an errno. Some usbtest cases can leave a host controller in an uninterruptible wait:
each ioctl runs in a child process (this file, run as a script) that is abandoned after a
deadline. Only the standard library is imported, so the child needs no path set up, and at
the top only what the ioctl needs: in the kernel tier's guest (software emulation, files over
9p) a child costs about 1.3 s, and every module it imports adds to that.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import struct
import sys
import time

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
# usbtest's module parameter: 1 (mod 63 within each packet) makes it fill and check every byte.
PATTERN_PARAMETER = "/sys/module/usbtest/parameters/pattern"
DEADLINE_S = 60.0  # then the child is abandoned
KILL_GRACE_S = 5.0

_REASON_CHARS = 200


class UsbtestError(Exception):
    """A usbtest ioctl did not succeed; the message says which test and why, on one line."""


class UsbtestTimeout(UsbtestError):
    """A usbtest ioctl outlived its deadline; its process may still hold the device."""


class Run:
    """One successful ioctl: ``iterations`` of the test, URBs of up to ``length`` bytes.

    ``wall_s`` is the time around the ioctl, in the child; ``driver_s`` what usbtest measured
    and wrote back in the duration field. (A plain class: dataclasses would cost the child.)
    """

    __slots__ = ("driver_s", "iterations", "length", "sglen", "test", "vary", "wall_s")

    def __init__(
        self,
        test: int,
        iterations: int,
        length: int,
        wall_s: float,
        driver_s: float,
        vary: int = 0,
        sglen: int = 0,
    ) -> None:
        self.test = test
        self.iterations = iterations
        self.length = length
        self.wall_s = wall_s
        self.driver_s = driver_s
        self.vary = vary
        self.sglen = sglen

    def __repr__(self) -> str:
        return (
            f"Run(test={self.test}, iterations={self.iterations}, length={self.length},"
            f" vary={self.vary}, sglen={self.sglen}, wall_s={self.wall_s:.6f},"
            f" driver_s={self.driver_s:.6f})"
        )

    @property
    def mb_per_s(self) -> float:
        """MB (10**6 bytes) per second of wall time, for the tests that move ``iterations``
        URBs of ``length`` bytes (1 and 2)."""
        return self.iterations * self.length / self.wall_s / 1e6


def run_test(
    node: str | os.PathLike[str],
    test: int,
    iterations: int,
    length: int,
    vary: int = 0,
    sglen: int = 0,
    deadline_s: float = DEADLINE_S,
) -> Run:
    """One usbtest ioctl in a child process; a child still running after ``deadline_s`` is
    killed, or left behind when the kernel holds it."""
    import subprocess  # here, not at the top: the child has no use for it

    numbers = (test, iterations, length, vary, sglen)
    script = os.path.realpath(__file__)
    child = subprocess.Popen(
        [sys.executable, "-S", script, os.fspath(node), *map(str, numbers)],
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
        return Run(test, iterations, length, float(fields[2]), float(fields[3]), vary, sglen)
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


def _errno_line(exc: OSError, wall: float, what: str) -> str:
    name = errno.errorcode.get(exc.errno or 0, f"errno{exc.errno}")
    return f"errno {name} {wall:.6f} {what} {exc.strerror}"


def _ioctl(node: str, test: int, iterations: int, length: int, vary: int, sglen: int) -> str:
    """Runs the test; ``ok RESULT WALL DRIVER`` or ``errno NAME WALL open|ioctl MESSAGE``."""
    # An array's buffer has an address to give the kernel (ctypes would cost the child more).
    param = array.array("B", PARAM.pack(test, iterations, length, vary, sglen, 0, 0))
    address, _items = param.buffer_info()
    request = bytearray(IOCTL.pack(INTERFACE, USBTEST_REQUEST, address))
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
    *_, seconds, microseconds = PARAM.unpack(param.tobytes())
    return f"ok {result} {wall:.6f} {seconds + microseconds / 1e6:.6f}"


def main(argv: list[str]) -> int:
    node, *numbers = argv
    test, iterations, length, vary, sglen = map(int, numbers)
    print(_ioctl(node, test, iterations, length, vary, sglen), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
