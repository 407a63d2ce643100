"""The command line's grammar: every command, its options and how each value is checked."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from usbip_gadget import __version__
from usbip_gadget._net import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PER_ADDRESS
from usbip_gadget.bridge import BULK_URBS, DEFAULT_DEPTH, DEFAULT_LISTEN, parse_class_rule
from usbip_gadget.cli._values import (
    argument,
    count,
    depth,
    gadget_name,
    port,
    seconds,
    ws_path,
)
from usbip_gadget.client import DEFAULT_ENUMERATION_TIMEOUT
from usbip_gadget.gadget import Backend
from usbip_gadget.protocol import DEFAULT_PORT
from usbip_gadget.server import DEFAULT_BIND, check_busid, parse_vid_pid

_SERVER_HELP = (
    "HOST[:PORT] of a USB/IP server, or usbredir://HOST:PORT of a usbredir usb-host"
    " (usbredirect --as)"
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        usage_error(message)


_DESCRIPTION = """\
Make a USB device attached to another machine appear plugged into this one's USB
device port. usbip-gadget imports the device from a USB/IP server (usbipd, usbipd-win
or `usbip-gadget serve`), replays its descriptors as a USB gadget (configfs with
FunctionFS or GadgetFS), and carries every transfer between the host on this port
and the remote device."""

_EPILOG = """\
typical use:
  usbip-gadget list SERVER               what SERVER exports
  usbip-gadget plan SERVER BUSID         how this board would replay it
  usbip-gadget attach SERVER BUSID       plug it into this board's device port
  usbip-gadget serve --allow VID:PID     export a device plugged into this machine

Run 'usbip-gadget COMMAND --help' for a command's options."""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every command and its options."""
    parser = _Parser(
        prog="usbip-gadget",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"usbip-gadget {__version__}")
    parser.add_argument(
        "--timeout", type=seconds, default=10.0, help="seconds per network step (default 10)"
    )
    parser.add_argument(
        "--enumeration-timeout", type=seconds, default=DEFAULT_ENUMERATION_TIMEOUT,
        metavar="S", help="seconds for reading all of a device's descriptors, and for all of"
        f" list's probing (default {DEFAULT_ENUMERATION_TIMEOUT:g})",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p_list = sub.add_parser("list", help="list the devices a USB/IP server exports")
    p_list.add_argument("server", metavar="HOST[:PORT]")
    p_list.add_argument(
        "--no-probe", action="store_true", help="do not import each device to read its product"
    )
    add_tls_options(p_list, dialing=True)
    p_desc = sub.add_parser("describe", help="import a device, enumerate it, print its descriptors")
    p_desc.add_argument("server", metavar="SERVER", help=_SERVER_HELP)
    p_desc.add_argument("busid", nargs="?", help="its bus ID on the server (or --device)")
    _add_device_match(p_desc)
    p_desc.add_argument("--json", action="store_true", help="print the device snapshot as JSON")
    add_tls_options(p_desc, dialing=True)
    sub.add_parser("udc", help="list this machine's USB device controllers")
    p_doctor = sub.add_parser(
        "doctor", help="check this board for what a gadget needs, one line per check with a fix"
    )
    p_doctor.add_argument(
        "--device", nargs=2, metavar=("HOST[:PORT]", "BUSID"),
        help="also plan that remote device against this board's controller",
    )  # fmt: skip
    p_attach = sub.add_parser(
        "attach", help="replay a remote device on a USB device controller and bridge its traffic"
    )
    p_attach.add_argument(
        "server", metavar="SERVER", nargs="?", help=f"{_SERVER_HELP} (or server in --config)"
    )
    p_attach.add_argument(
        "busid", nargs="?", help="the device's bus ID on the server, like 1-1 (or --device)"
    )
    _add_device_match(p_attach)
    _add_config(p_attach)
    _add_gadget_options(p_attach)
    _add_policy_options(p_attach)
    p_attach.add_argument(
        "--reconnect", action="store_true", help="when the device goes away, wait for it"
    )
    p_attach.add_argument(
        "--dry-run", action="store_true",
        help="print the plan (backend, what the host will see differently) and plug nothing",
    )  # fmt: skip
    add_tls_options(p_attach, dialing=True)
    p_plan = sub.add_parser(
        "plan",
        help="which backend would replay a remote device, and what the host sees differently",
    )
    p_plan.add_argument("server", metavar="SERVER", help=_SERVER_HELP)
    p_plan.add_argument("busid", nargs="?", help="its bus ID on the server (or --device)")
    _add_device_match(p_plan)
    p_plan.add_argument("--udc", help="the controller it would be plugged into")
    p_plan.add_argument(
        "--backend", type=Backend, choices=list(Backend), default=Backend.AUTO,
        help="(default auto)",
    )  # fmt: skip
    p_plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    _add_bulk_urbs(p_plan)
    _add_device_rules(p_plan)
    add_tls_options(p_plan, dialing=True)
    _serve_parser(sub)
    _connect_parsers(sub)
    _install_service_parser(sub)
    _gadget_parser(sub)
    return parser


def _gadget_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p_gadget = sub.add_parser(
        "gadget", help="stand up a source device from a template (configfs), or take it down"
    )
    actions = p_gadget.add_subparsers(dest="action", required=True, parser_class=_Parser)
    actions.add_parser("templates", help="list the templates")
    p_up = actions.add_parser("up", help="build a template as a gadget and bind it to a UDC")
    p_up.add_argument("target", metavar="TEMPLATE", help="a template's name, or a .toml file")
    p_up.add_argument("--udc", help="the controller to bind to (default: the only one)")
    p_up.add_argument(
        "--name", type=gadget_name, help="the configfs gadget name (default: the template's)"
    )
    p_up.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="a value for one of the template's variables, like file=disk.img (repeatable)",
    )  # fmt: skip
    p_down = actions.add_parser("down", help="unbind a gadget and remove it from configfs")
    p_down.add_argument("target", metavar="NAME", type=gadget_name)


def _install_service_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p_install = sub.add_parser(
        "install-service",
        help="put the systemd units in place and enable the services named (as root)",
    )
    p_install.add_argument(
        "services", nargs="*", metavar="NAME", type=gadget_name,
        help="NAME: usbip-gadget@NAME (attach --config /etc/usbip-gadget/NAME.toml); serve and"
        " listen: those services (serve.toml, listen.toml); each file must be there and valid",
    )  # fmt: skip
    p_install.add_argument(
        "--root", default="/", metavar="DIR", help="install below DIR, and start nothing"
    )
    p_install.add_argument(
        "--program", metavar="PATH",
        help="the usbip-gadget the units run (default: this one)",
    )  # fmt: skip
    p_install.add_argument(
        "--no-start", action="store_true", help="install and enable, but start nothing now"
    )


def _serve_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p_serve = sub.add_parser("serve", help="export local USB devices to USB/IP clients")
    p_serve.add_argument(
        "--bind", default=DEFAULT_BIND, metavar="ADDR",
        help=f"address to listen on (default {DEFAULT_BIND}: this machine only)",
    )  # fmt: skip
    p_serve.add_argument("--port", type=port, default=DEFAULT_PORT, help="TCP port (3240)")
    p_serve.add_argument(
        "--allow", type=argument(parse_vid_pid), action="append", default=[],
        metavar="VID:PID", help="export the devices with this idVendor:idProduct (repeatable)",
    )  # fmt: skip
    p_serve.add_argument(
        "--busid", type=argument(check_busid), action="append", default=[],
        help="export the device at this bus ID, like 1-1 (repeatable)",
    )  # fmt: skip
    add_tls_options(p_serve, dialing=False)
    _add_connection_caps(p_serve)
    _add_config(p_serve)
    p_serve.add_argument(
        "--idle-timeout", type=seconds, default=None, metavar="S",
        help="drop a client that has had no URB in flight and sent nothing for S seconds"
        " (default: never)",
    )  # fmt: skip
    p_serve.add_argument(
        "--usbredir", action="store_true",
        help="speak usbredir instead of USB/IP (to QEMU's usb-redir, remote-viewer, or"
        " attach usbredir://): one selected device per connection, plain TCP",
    )  # fmt: skip


def _add_device_match(parser: argparse.ArgumentParser) -> None:
    """Which exported device: by what it is, found again under a new bus ID (attach, plan,
    describe)."""
    parser.add_argument(
        "--device", type=argument(parse_vid_pid), metavar="VID:PID",
        help="the device with this idVendor:idProduct, whatever its bus ID (instead of BUSID)",
    )  # fmt: skip
    parser.add_argument(
        "--serial", metavar="TEXT", help="with --device: the device with this serial number"
    )
    parser.add_argument(
        "--product", metavar="TEXT", help="with --device: the device with this product string"
    )


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="PATH",
        help="read options from this TOML file: its keys are this command's long options"
        " without dashes (and server, busid); flags given here win",
    )  # fmt: skip


def _add_connection_caps(parser: argparse.ArgumentParser) -> None:
    """How many connections a listening command holds at once (serve, listen)."""
    parser.add_argument(
        "--max-connections", type=count, default=DEFAULT_MAX_CONNECTIONS, metavar="N",
        help=f"connections held at once; more are closed at once (default"
        f" {DEFAULT_MAX_CONNECTIONS})",
    )  # fmt: skip
    parser.add_argument(
        "--max-per-address", type=count, default=DEFAULT_MAX_PER_ADDRESS, metavar="N",
        help=f"connections held at once from one address (default {DEFAULT_MAX_PER_ADDRESS})",
    )  # fmt: skip


def _add_gadget_options(parser: argparse.ArgumentParser) -> None:
    """Where and how a bridged device is replayed (attach, listen)."""
    parser.add_argument("--udc", help="the controller to plug into (default: the only one)")
    parser.add_argument(
        "--name", default="usbip-gadget", type=gadget_name, help="configfs gadget name"
    )
    parser.add_argument(
        "--backend", type=Backend, choices=list(Backend), default=Backend.AUTO,
        help="kernel interface: functionfs, gadgetfs, or auto (FunctionFS when it can express "
        "the device, else GadgetFS; the default)",
    )  # fmt: skip
    parser.add_argument(
        "--readahead", type=depth, default=DEFAULT_DEPTH, metavar="N",
        help=f"IN URBs kept queued per endpoint (default {DEFAULT_DEPTH})",
    )  # fmt: skip
    _add_bulk_urbs(parser)


def _add_bulk_urbs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bulk-urbs", choices=BULK_URBS, default="exact",
        help="exact (the default): one packet per URB where the protocol does not say more;"
        " adaptive: bulk URBs grow while the device fills them and OUT packets are pipelined"
        " (faster; see the README for what it risks)",
    )  # fmt: skip


def _add_device_rules(parser: argparse.ArgumentParser) -> None:
    """Which devices may be plugged (attach, listen, plan)."""
    parser.add_argument(
        "--allow", type=argument(parse_vid_pid), action="append", default=[],
        metavar="VID:PID", help="plug the device with this idVendor:idProduct, HID included"
        " (repeatable); once any rule is given, only devices a rule admits are plugged",
    )  # fmt: skip
    parser.add_argument(
        "--allow-class", type=argument(parse_class_rule), action="append", default=[],
        metavar="CLASS[:SUB[:PROTO]]", help="plug devices whose every interface matches one"
        " of these rules (hex, like 08 or 03:01:01; repeatable); without a rule of class 03"
        " no HID device (keyboard, mouse) is plugged",
    )  # fmt: skip


def _add_policy_options(parser: argparse.ArgumentParser) -> None:
    """Which devices may be plugged and which of the host's requests reach them."""
    _add_device_rules(parser)
    parser.add_argument(
        "--allow-dfu", action="store_true",
        help="pass the host's DFU (firmware update) requests to the device (refused by default)",
    )  # fmt: skip


def _connect_parsers(sub: argparse._SubParsersAction[_Parser]) -> None:
    p_listen = sub.add_parser(
        "listen", help="wait for a device side to offer a device (connect), and bridge it"
    )
    p_listen.add_argument(
        "--bind", default=DEFAULT_LISTEN, metavar="ADDR",
        help=f"address to listen on (default {DEFAULT_LISTEN}: this machine only)",
    )  # fmt: skip
    p_listen.add_argument("--port", type=port, default=DEFAULT_PORT, help="TCP port (3240)")
    p_listen.add_argument(
        "--ws", type=ws_path, metavar="PATH",
        help="take offers as WebSocket connections for PATH, like /usbip (wss:// with the"
        " --tls options; plain ws:// only for tests on this machine)",
    )  # fmt: skip
    _add_gadget_options(p_listen)
    _add_policy_options(p_listen)
    add_tls_options(p_listen, dialing=False)
    _add_connection_caps(p_listen)
    _add_config(p_listen)
    p_connect = sub.add_parser(
        "connect", help="offer a local USB device to a listening gadget side, and serve it"
    )
    p_connect.add_argument(
        "server", metavar="HOST[:PORT]|wss://HOST[:PORT]/PATH",
        help="the listening side: USB/IP on TCP (with TLS given the --tls options), or a"
        " WebSocket URL (wss:// needs the --tls options, ws:// takes none)",
    )  # fmt: skip
    p_connect.add_argument("busid", type=argument(check_busid))
    add_tls_options(p_connect, dialing=True)


_TLS_GROUP = """\
all three together, on both ends (PEM files); without them, plain TCP (what Linux's usbipd
and usbip speak)"""


def add_tls_options(parser: argparse.ArgumentParser, *, dialing: bool) -> None:
    """Mutual TLS, the same on every command that has a network peer; ``dialing``: the
    side that connects, which checks the name on the peer's certificate."""
    group = parser.add_argument_group("mutual TLS", _TLS_GROUP)
    group.add_argument("--tls-cert", metavar="FILE", help="this side's certificate")
    group.add_argument("--tls-key", metavar="FILE", help="its private key")
    group.add_argument(
        "--tls-ca", metavar="FILE",
        help="the CA that signed the peer's certificate: peers without one are refused",
    )  # fmt: skip
    if dialing:
        group.add_argument(
            "--tls-peer-name", metavar="NAME",
            help="the name the server's certificate must carry (default: the host dialed)",
        )  # fmt: skip


def tls_files(args: argparse.Namespace) -> tuple[str, str, str] | None:
    """(cert, key, ca), or None without TLS; a partial set is a usage error (exit 2)."""
    given = {"--tls-cert": args.tls_cert, "--tls-key": args.tls_key, "--tls-ca": args.tls_ca}
    missing = [name for name, value in given.items() if value is None]
    if len(missing) == len(given):
        if getattr(args, "tls_peer_name", None) is not None:
            usage_error("--tls-peer-name needs --tls-cert, --tls-key and --tls-ca")
        return None
    if missing:
        usage_error(f"--tls-cert, --tls-key and --tls-ca go together: missing {', '.join(missing)}")
    return args.tls_cert, args.tls_key, args.tls_ca


def command_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of command ``name`` in ``build_parser()``'s parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise LookupError(name)


def usage_error(message: str) -> NoReturn:
    """Exit 2 with ``message``, as a malformed command line does."""
    sys.stderr.write(f"usbip-gadget: {message}\n")
    raise SystemExit(2)
