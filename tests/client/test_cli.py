"""The command line: one-line errors and exit statuses, against a real TCP server."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator

import pytest
import trio
from pyfakefs.fake_filesystem import FakeFilesystem

from tests.client.fakes import FakeServer, FakeUsbDevice, disk, keyboard
from tests.usb.vectors import CDC_ACM_CONFIG
from usbip_gadget.cli import main


@pytest.fixture
def server_port() -> Iterator[tuple[int, FakeServer]]:
    """A FakeServer on 127.0.0.1 in its own thread and trio run; each connection is served."""
    serial = FakeUsbDevice(
        device_raw=bytes.fromhex("12011002ef0201406b1d0601000100000001"),
        configs_raw=[CDC_ACM_CONFIG],
        busid="1-3",
    )
    fakes = [keyboard(), disk(), serial]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    last = FakeServer(fakes)
    stop = threading.Event()

    async def run() -> None:
        trio_listener = trio.SocketListener(trio.socket.from_stdlib_socket(listener))
        async with trio.open_nursery() as nursery:

            async def handle(stream: trio.SocketStream) -> None:
                server = FakeServer(fakes, busy=last.busy)
                await server.serve(stream)
                await stream.aclose()

            nursery.start_soon(trio.serve_listeners, handle, [trio_listener])
            await trio.to_thread.run_sync(stop.wait)
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(run,), daemon=True)
    thread.start()
    yield port, last
    stop.set()
    thread.join(timeout=10)


def test_list_prints_one_line_per_device(
    server_port: tuple[int, FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    port, _ = server_port
    assert main(["list", f"127.0.0.1:{port}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "1-1        1234:abcd  high   Keyboard",
        "1-2        1d6b:0104  high",
        "1-3        1d6b:0104  high",
    ]


def test_list_marks_busy_devices(
    server_port: tuple[int, FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    port, server = server_port
    server.busy.add("1-1")
    assert main(["list", f"127.0.0.1:{port}"]) == 0
    assert (
        capsys.readouterr()
        .out.splitlines()[0]
        .endswith("(device busy (already imported by another client))")
    )


def test_describe_json_and_tree(
    server_port: tuple[int, FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    port, _ = server_port
    assert main(["describe", f"127.0.0.1:{port}", "1-1", "--json"]) == 0
    snapshot = json.loads(capsys.readouterr().out)
    assert snapshot["device"]["idVendor"] == 0x1234
    assert snapshot["strings"]["0x0409"]["2"] == "Keyboard"
    assert main(["describe", f"127.0.0.1:{port}", "1-1"]) == 0
    assert "iProduct                2 Keyboard" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["describe", "{addr}", "7-7"], "usbip-gadget: cannot import 7-7: no such device\n"),
        (
            ["list", "127.0.0.1:1"],
            "usbip-gadget: cannot connect to 127.0.0.1:1: Connection refused\n",
        ),
        (["list", "127.0.0.1:x"], "usbip-gadget: invalid port 'x' in '127.0.0.1:x'\n"),
    ],
)
def test_errors_are_one_line_with_exit_1(
    server_port: tuple[int, FakeServer],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    port, _ = server_port
    assert main([a.format(addr=f"127.0.0.1:{port}") for a in argv]) == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", message)


def test_hostile_server_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def lie() -> None:
        conn, _ = listener.accept()
        conn.recv(8)
        conn.sendall(bytes.fromhex("0111 0005 00000000 ffffffff".replace(" ", "")))
        conn.close()

    thread = threading.Thread(target=lie, daemon=True)
    thread.start()
    with listener:
        assert main(["list", f"127.0.0.1:{listener.getsockname()[1]}"]) == 1
        thread.join(timeout=10)
    assert capsys.readouterr().err == "usbip-gadget: device list claims 4294967295 devices\n"


@pytest.mark.parametrize("value", ["-1", "nan", "0", "soon"])
def test_bad_timeout_is_a_usage_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([f"--timeout={value}", "list", "127.0.0.1:1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usbip-gadget: argument --timeout:")
    assert len(err.splitlines()) == 1


def test_network_text_cannot_drive_the_terminal() -> None:
    from usbip_gadget.cli._commands import _printable

    assert _printable("Disk\x1b[2J\x07\nok") == "Disk\\x1b[2J\\x07\nok"


def test_name_resolution_failure_reads_well() -> None:
    from usbip_gadget._net import _reason

    assert _reason(socket.gaierror(-2, "Name or service not known")) == "Name or service not known"


def test_plan_json_chooses_gadgetfs_for_class_descriptors(
    server_port: tuple[int, FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    port, _ = server_port
    assert main(["plan", f"127.0.0.1:{port}", "1-3", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["backend"] == "gadgetfs"
    assert any("0x24" in reason for reason in plan["functionfs_refuses"])
    # bcdUSB 0x0210 → 0x0200 is all GadgetFS changes of this device.
    assert [(d["offset"], d["remote"], d["local"]) for d in plan["differences"]] == [
        (2, 0x10, 0x00)
    ]
    assert plan["refused"] is None


def test_dry_run_prints_the_plan_and_plugs_nothing(
    server_port: tuple[int, FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    port, _ = server_port
    assert main(["attach", f"127.0.0.1:{port}", "1-2", "--dry-run", "--udc", "none.0"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "backend: functionfs"


def test_a_forced_backend_that_cannot_replay_is_one_line_and_exit_1(
    server_port: tuple[int, FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    port, _ = server_port
    assert main(["plan", f"127.0.0.1:{port}", "1-3", "--backend", "functionfs"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("usbip-gadget: FunctionFS cannot express this device: interface 0:")
    assert err.count("\n") == 1


def test_plan_says_how_each_endpoint_moves_its_urbs(
    server_port: tuple[int, FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    port, _ = server_port
    # 1-3 is a CDC-ACM serial port: bulk IN and OUT, and an interrupt IN endpoint.
    assert main(["plan", f"127.0.0.1:{port}", "1-3", "--bulk-urbs", "adaptive", "--json"]) == 0
    adaptive = json.loads(capsys.readouterr().out)["urbs"]
    assert len(adaptive) == 3
    by_kind = {" ".join(line.split(":")[0].split()[1:]): line for line in adaptive}
    assert "packets forwarded as they arrive" in by_kind["bulk OUT"]
    assert "adaptive, 64 to 65536 bytes per URB" in by_kind["bulk IN"]
    assert "exact, one packet" in by_kind["interrupt IN"]
    assert main(["plan", f"127.0.0.1:{port}", "1-3"]) == 0
    out = capsys.readouterr().out.splitlines()
    exact = out[out.index("URBs per endpoint:") + 1 :]
    assert len(exact) == 3
    assert all(line.startswith("  0x") and ": exact, one packet" in line for line in exact)


GADGETS = "/sys/kernel/config/usb_gadget"
KEYBOARD_REFUSED = (
    "refused 1234:abcd 'Keyboard' (1-1 on 127.0.0.1): interface 0 is HID (03:01:01);"
    " only --allow 1234:abcd or --allow-class 03 plugs it"
)


def test_plan_says_the_policy_refuses_a_keyboard_without_a_rule(
    server_port: tuple[int, FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    port, _ = server_port
    assert main(["plan", f"127.0.0.1:{port}", "1-1"]) == 1
    assert f"policy: refuses it: {KEYBOARD_REFUSED.split(': ', 1)[1]}" in (
        capsys.readouterr().out.splitlines()
    )
    assert main(["plan", f"127.0.0.1:{port}", "1-1", "--allow-class", "03", "--json"]) == 0
    policy = json.loads(capsys.readouterr().out)["policy"]
    assert policy == {"allowed": True, "reason": "--allow-class 03"}
    assert main(["plan", f"127.0.0.1:{port}", "1-2", "--allow", "1234:abcd", "--json"]) == 1
    policy = json.loads(capsys.readouterr().out)["policy"]
    assert policy["allowed"] is False
    assert policy["reason"].startswith("interface 0 (08:06:50) matches no --allow-class rule")


# sysfs and configfs are pyfakefs's; the client's socket writes (os.write) stay real.
@pytest.mark.parametrize("fs", [[["usbip_gadget.client._device"]]], indirect=True)
def test_attach_refuses_a_keyboard_in_one_line_and_builds_no_gadget(
    server_port: tuple[int, FakeServer], capsys: pytest.CaptureFixture[str], fs: FakeFilesystem
) -> None:
    port, _ = server_port
    fs.create_dir("/sys/class/udc/dummy_udc.1")
    fs.create_dir(GADGETS)
    assert main(["attach", f"127.0.0.1:{port}", "1-1", "--udc", "dummy_udc.1"]) == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"usbip-gadget: {KEYBOARD_REFUSED}\n")
    assert os.listdir(GADGETS) == []


@pytest.mark.parametrize("command", ["attach", "listen", "plan"])
def test_a_malformed_class_rule_is_a_usage_error(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    where = [] if command == "listen" else ["127.0.0.1:1", "1-1"]
    with pytest.raises(SystemExit) as info:
        main([command, *where, "--allow-class", "03:1:2:3"])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        "usbip-gadget: argument --allow-class: '03:1:2:3' is not CLASS[:SUB[:PROTO]]"
        " (hex bytes, like 03 or 07:01:02)\n"
    )
