"""The "connect" direction on a real kernel: ``usbip-gadget listen`` waits on the second dummy
controller's side, ``usbip-gadget connect`` dials it and offers the source disk from the first
dummy bus; the host on bus 2 gets the bridged disk. Killing ``connect`` unplugs it; a new
``connect`` plugs it again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from . import _bridge, _devio, _gadget, _sysfs, _usbip

pytestmark = pytest.mark.kernel

LISTEN_PORT = 3260
START_TIMEOUT_S = _bridge.PLUG_TIMEOUT_S  # a CLI start
PLUG_TIMEOUT_S = _bridge.PLUG_TIMEOUT_S
UNPLUG_BOUND_S = 1.5  # the goal is 1 s; the host's hub poll adds its own moments
DRIVER_TIMEOUT_S = 60.0


def _bridged_disk(vid: int, pid: int) -> Path:
    buses = _sysfs.udc_host_buses(_bridge.BRIDGE_UDC)
    device = _sysfs.wait_for(
        lambda: _sysfs.configured_device(buses, vid, pid), PLUG_TIMEOUT_S, "the offered disk"
    )
    return _sysfs.wait_for(
        lambda: _sysfs.first_path(_sysfs.block_devices(device)),
        DRIVER_TIMEOUT_S,
        "a disk on the bridge",
    )


@pytest.mark.timeout(500)
def test_connect_to_listen_plugs_and_a_killed_connect_unplugs(
    backing_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    image, content = backing_file
    buses = _sysfs.udc_host_buses(_bridge.BRIDGE_UDC)
    with _gadget.storage_gadget(image) as source:
        vid, pid = source.spec.vid, source.spec.pid
        listen_argv = ["listen", "--port", str(LISTEN_PORT), "--udc", _bridge.BRIDGE_UDC]
        connect_argv = ["connect", f"{_usbip.LOOPBACK}:{LISTEN_PORT}", source.busid]
        with _bridge.running(
            [*listen_argv, "--name", "listen"], tmp_path / "listen.log", "connect"
        ) as listener:
            _sysfs.wait_until(
                lambda: listener.poll() is not None or _usbip.listening(LISTEN_PORT),
                START_TIMEOUT_S,
                f"listen on port {LISTEN_PORT}",
            )
            first = _bridge.start_cli(connect_argv, tmp_path / "connect-1.log")
            try:
                disk = _bridged_disk(vid, pid)
                read_back = _devio.read_disk(disk, len(content))
                mismatch = _devio.first_difference(read_back, content)
                assert mismatch is None, f"{disk} differs from the source at byte {mismatch}"
            finally:
                first.kill()  # the device side vanishes without a word
                killed = time.monotonic()
                first.wait()
            _sysfs.wait_until(
                lambda: not _sysfs.find_devices(buses, vid, pid), 10.0, "the bridged disk gone"
            )
            seconds = time.monotonic() - killed
            out = os.environ.get("KERNEL_TIER_OUT")
            if out:
                Path(out, "connect-unplug.txt").write_text(
                    f"bridged disk gone from bus {sorted(buses)} {seconds:.3f} s after"
                    " connect was killed\n"
                )
            assert seconds < UNPLUG_BOUND_S, seconds
            # The same device offered again by a new connect is plugged again.
            with _bridge.running(connect_argv, tmp_path / "connect-2.log", "connect"):
                disk = _bridged_disk(vid, pid)
                assert _devio.disk_size(disk) == len(content)
                assert _devio.read_disk(disk, 4096) == content[:4096]
            _sysfs.wait_until(
                lambda: not _sysfs.find_devices(buses, vid, pid), 10.0, "the bridged disk gone"
            )
        text = (tmp_path / "listen.log").read_text()
        assert text.count(f"plugged {vid:04x}:{pid:04x} ({source.busid} from 127.0.0.1") == 2
