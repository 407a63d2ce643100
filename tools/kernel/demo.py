"""make demo, inside the kernel tier's guest: a real usbipd exports a sample disk, usbip-gadget
replays it on the second device controller, and the host side shows what it sees.

    python tools/kernel/demo.py OUT
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.kernel import _bridge, _gadget, _sysfs, _usbip  # noqa: E402
from tests.kernel.conftest import MODULES  # noqa: E402

SAMPLE_TEXT = "Hello from a disk on the other side of a USB/IP connection.\n"
DISK_SIZE = 16 << 20


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def prepare_bed() -> None:
    for module, parameters in MODULES:
        _usbip.run(["modprobe", module, *parameters], timeout=60)
    mounts = Path("/proc/mounts").read_text()
    if " /sys/kernel/config configfs " not in mounts:
        _usbip.run(["mount", "-t", "configfs", "none", "/sys/kernel/config"])
    _usbip.run(["ip", "link", "set", "lo", "up"])


def sample_disk(workdir: Path) -> Path:
    """A 16 MiB ext2 image holding hello.txt."""
    content = workdir / "content"
    content.mkdir()
    (content / "hello.txt").write_text(SAMPLE_TEXT)
    image = workdir / "sample.img"
    with open(image, "wb") as disk:
        disk.truncate(DISK_SIZE)
    _usbip.run(["mkfs.ext2", "-q", "-F", "-L", "sample", "-d", str(content), str(image)])
    return image


def show_host_side(device: Path, workdir: Path) -> None:
    bus, dev = _sysfs.read_text(device / "busnum"), _sysfs.read_text(device / "devnum")
    say(f"the host sees bus {bus} device {dev}: lsusb -v -s {bus}:{dev}")
    print(_usbip.run(["lsusb", "-v", "-s", f"{bus}:{dev}"]), flush=True)
    disk = _sysfs.wait_for(
        lambda: _sysfs.first_path(_sysfs.block_devices(device)), 60, "the bridged disk"
    )
    mnt = workdir / "mnt"
    mnt.mkdir()
    _usbip.run(["mount", "-o", "ro", str(disk), str(mnt)])
    try:
        say(f"{disk} mounted read-only on the host side; hello.txt says:")
        print((mnt / "hello.txt").read_text(), end="", flush=True)
    finally:
        _usbip.run(["umount", str(mnt)])


def main(out: Path) -> int:
    prepare_bed()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        image = sample_disk(workdir)
        address = stack.enter_context(_usbip.usbipd(out / "usbipd.log"))
        source = stack.enter_context(_gadget.storage_gadget(image))
        busid = stack.enter_context(_usbip.exported(source.busid))
        ident = f"{source.spec.vid:04x}:{source.spec.pid:04x}"
        say(f"usbipd exports the sample disk as {busid} ({ident})")
        say(f"running: usbip-gadget attach {address} {busid} --udc {_bridge.BRIDGE_UDC}")
        log = out / "attach.log"
        bridge = stack.enter_context(
            _bridge.bridged(address, busid, source.spec.vid, source.spec.pid, log)
        )
        print(bridge.text(), end="", flush=True)
        show_host_side(bridge.device, workdir)
        _bridge.stop(bridge)
        print(bridge.text().splitlines()[-1], flush=True)
        say(f"attach exited {bridge.exit_code} {bridge.stop_seconds:.1f} s after SIGTERM")
        return 0 if bridge.exit_code == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main(Path(sys.argv[1])))
    except (OSError, subprocess.SubprocessError, RuntimeError, TimeoutError, AssertionError) as exc:
        print(f"demo: failed: {exc}", file=sys.stderr)
        sys.exit(1)
