"""``--config FILE``: the same option set as the flags, read off the parser, flags winning."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tests.client.fakes import FakeServer
from tests.client.test_cli import server_port  # noqa: F401 - the fixture
from usbip_gadget.cli import main
from usbip_gadget.cli._args import parse as _parse
from usbip_gadget.cli._config import _keys
from usbip_gadget.cli._parser import build_parser, command_parser

# One value for every key attach takes, as TOML and as the flags that say the same.
ATTACH_KEYS: dict[str, tuple[str, list[str]]] = {
    "server": ('"scanner:3241"', ["scanner:3241"]),
    "busid": ('"1-1.2"', ["scanner:3241", "1-1.2"]),
    "device": ('"04a9:1909"', ["--device", "04a9:1909"]),
    "serial": ('"SN 7"', ["--serial", "SN 7"]),
    "product": ('"LiDE"', ["--product", "LiDE"]),
    "udc": ('"20980000.usb"', ["--udc", "20980000.usb"]),
    "name": ('"scanner"', ["--name", "scanner"]),
    "backend": ('"gadgetfs"', ["--backend", "gadgetfs"]),
    "readahead": ("8", ["--readahead", "8"]),
    "bulk-urbs": ('"adaptive"', ["--bulk-urbs", "adaptive"]),
    "allow": ('["04a9:1909", "04a9:190a"]', ["--allow", "04a9:1909", "--allow", "04a9:190a"]),
    "allow-class": ('["07", "08:06"]', ["--allow-class", "07", "--allow-class", "08:06"]),
    "allow-dfu": ("true", ["--allow-dfu"]),
    "reconnect": ("true", ["--reconnect"]),
    "tls-cert": ('"/etc/k/c.pem"', ["--tls-cert", "/etc/k/c.pem"]),
    "tls-key": ('"/etc/k/k.pem"', ["--tls-key", "/etc/k/k.pem"]),
    "tls-ca": ('"/etc/k/ca.pem"', ["--tls-ca", "/etc/k/ca.pem"]),
    "tls-peer-name": ('"scanner"', ["--tls-peer-name", "scanner"]),
}
GLOBAL_KEYS = {"timeout": ("2.5", ["--timeout", "2.5"]), "enumeration-timeout": ("90", [])}


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "device.toml"
    path.write_text(text)
    return str(path)


def test_every_attach_flag_is_a_key_and_nothing_else_is() -> None:
    parser = build_parser()
    keys = set(_keys(command_parser(parser, "attach"))) | set(_keys(parser))
    assert keys == set(ATTACH_KEYS) | set(GLOBAL_KEYS)


@pytest.mark.parametrize("key", sorted(ATTACH_KEYS))
def test_a_key_means_what_its_flag_means(key: str, tmp_path: Path) -> None:
    toml, flags = ATTACH_KEYS[key]
    config = _write(tmp_path, f"{key} = {toml}\n")
    from_file = _parse(["attach", "--config", config])
    from_flags = _parse(["attach", "--config", _write(tmp_path, ""), *flags])
    dest = key.replace("-", "_")
    assert getattr(from_file, dest) == getattr(from_flags, dest)
    assert getattr(from_file, dest) != getattr(_parse(["attach"]), dest)


def test_flags_win_and_repeatable_flags_add(tmp_path: Path) -> None:
    config = _write(
        tmp_path,
        'server = "a:1"\nbusid = "1-1"\nreadahead = 8\nallow = ["04a9:1909"]\ntimeout = 3\n',
    )
    args = _parse(
        ["--timeout", "7", "attach", "b:2", "--config", config, "--readahead", "2",
         "--allow", "1234:abcd"]
    )  # fmt: skip
    assert (args.server, args.busid, args.readahead, args.timeout) == ("b:2", "1-1", 2, 7.0)
    assert args.allow == [(0x04A9, 0x1909), (0x1234, 0xABCD)]


def test_a_device_named_on_the_command_line_replaces_the_files_choice(tmp_path: Path) -> None:
    by_what = _write(tmp_path, 'server = "a"\ndevice = "04a9:1909"\nserial = "S1"\n')
    args = _parse(["attach", "--config", by_what, "a", "1-4"])
    assert (args.busid, args.device, args.serial) == ("1-4", None, None)
    by_busid = _write(tmp_path, 'server = "a"\nbusid = "1-1"\n')
    args = _parse(["attach", "--config", by_busid, "--device", "04a9:1909"])
    assert (args.busid, args.device) == (None, (0x04A9, 0x1909))


def test_with_the_server_in_the_file_one_argument_is_the_busid(tmp_path: Path) -> None:
    config = _write(tmp_path, 'server = "scanner-host"\n')
    args = _parse(["attach", "--config", config, "1-1.2"])
    assert (args.server, args.busid) == ("scanner-host", "1-1.2")
    args = _parse(["attach", "--config", config, "other-host", "1-3"])
    assert (args.server, args.busid) == ("other-host", "1-3")
    args = _parse(["attach", "--config", config, "other-host"])
    assert (args.server, args.busid) == ("other-host", None)


def test_relative_files_are_taken_from_the_files_folder(tmp_path: Path) -> None:
    config = _write(tmp_path, 'tls-cert = "keys/c.pem"\ntls-ca = "/abs/ca.pem"\n')
    args = _parse(["attach", "--config", config])
    assert (args.tls_cert, args.tls_ca) == (str(tmp_path / "keys/c.pem"), "/abs/ca.pem")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("scanner = 1\n", "unknown key 'scanner' (known: allow, allow-class, allow-dfu, "),
        ('readahead = "many"\n', "readahead: 'many' is not a depth from 1 to 64"),
        ('reconnect = "yes"\n', "reconnect: expected true or false, got 'yes'"),
        ('backend = "usbfs"\n', "backend: 'usbfs' is not one of auto, functionfs, gadgetfs"),
        ("allow = [1, 2]\n", "allow: '1' is not VID:PID"),
        ("udc = true\n", "udc: expected text or a number, got True"),
        ("timeout = -1\n", "timeout: '-1' is not a positive number of seconds"),
        ("server = \n", "not TOML: Invalid value (at line 1, column 10)"),
        ("[tls]\ncert = 'c'\n", "unknown key 'tls'"),
    ],
)
def test_a_bad_file_is_one_line_and_exit_2(
    text: str, error: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path, text)
    with pytest.raises(SystemExit) as info:
        main(["attach", "--config", config])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usbip-gadget: {config}: {error}"), err
    assert err.count("\n") == 1


def test_a_file_that_is_not_text_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bin.toml"
    path.write_bytes(b'server = "\xff\xfe"\n')
    with pytest.raises(SystemExit) as info:
        main(["attach", "--config", str(path)])
    assert info.value.code == 2
    assert capsys.readouterr().err == f"usbip-gadget: {path}: not TOML: not UTF-8 text\n"


def test_a_missing_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--config", str(tmp_path / "none.toml")])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        f"usbip-gadget: cannot read {tmp_path / 'none.toml'}: No such file or directory\n"
    )


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["attach"], "attach: give HOST[:PORT], or server in the --config file"),
        (["attach", "h"], "attach: give a BUSID or --device VID:PID"),
        (["attach", "h", "1-1", "--device", "1:2"], "attach: give a BUSID (1-1) or --device"),
        (["attach", "h", "1-1", "--serial", "S"], "--serial and --product go with --device"),
    ],
)
def test_which_device_is_said_once(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith(f"usbip-gadget: {error}")


def test_a_config_file_finds_the_device_by_serial(
    server_port: tuple[int, FakeServer],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port, _ = server_port
    config = _write(
        tmp_path,
        f'server = "127.0.0.1:{port}"\ndevice = "1234:abcd"\nserial = "K-0001"\n'
        'allow = ["1234:abcd"]\nudc = "none.0"\n',
    )
    assert main(["attach", "--config", config, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "backend: functionfs"
    assert "policy: plugs it: --allow 1234:abcd" in out
    assert main(["attach", "--config", config, "--dry-run", "--serial", "K-0002"]) == 1
    assert capsys.readouterr().err == (
        f"usbip-gadget: no device 1234:abcd serial 'K-0002' on 127.0.0.1:{port}"
        " (1-1: serial 'K-0001' product 'Keyboard')\n"
    )


def test_serve_and_listen_take_a_config_file_too(tmp_path: Path) -> None:
    config = _write(tmp_path, 'allow = ["04a9:1909"]\nport = 3241\nmax-connections = 4\n')
    serve = _parse(["serve", "--config", config])
    assert (serve.allow, serve.port, serve.max_connections) == ([(0x04A9, 0x1909)], 3241, 4)
    listen = _parse(["listen", "--config", config])
    assert (listen.allow, listen.port) == ([(0x04A9, 0x1909)], 3241)
    assert isinstance(listen, argparse.Namespace)


def test_describe_and_plan_find_the_device_by_what_it_is(
    server_port: tuple[int, FakeServer],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    port, _ = server_port
    where = f"127.0.0.1:{port}"
    assert main(["describe", where, "--device", "1234:abcd", "--serial", "K-0001", "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert (described["device"]["idVendor"], described["device"]["idProduct"]) == (0x1234, 0xABCD)
    assert main(["plan", where, "--device", "1234:abcd", "--allow", "1234:abcd", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["policy"]["allowed"] is True
    assert main(["describe", where, "--device", "04a9:1909"]) == 1
    assert capsys.readouterr().err.startswith(f"usbip-gadget: no device 04a9:1909 on {where}")
    with pytest.raises(SystemExit) as info:
        main(["plan", where])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("usbip-gadget: plan: give a BUSID or --device")
