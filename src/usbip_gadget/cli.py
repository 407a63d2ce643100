"""Command line: argument parsing, ``trio.run`` and printing; the work is done elsewhere."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import trio

from usbip_gadget import __version__
from usbip_gadget._errors import GadgetError, UsbipGadgetError
from usbip_gadget.client import DeviceSummary, describe, parse_address, summarize
from usbip_gadget.gadget import list_udcs
from usbip_gadget.gadget._udc import NO_UDC_HINT
from usbip_gadget.usb import Speed, render_tree

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"usbip-gadget: {message}\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _printable(text: str) -> str:
    """Text from the network, with control characters escaped so they cannot drive the terminal."""
    return "".join(
        c if c == "\n" or c.isprintable() else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="usbip-gadget", description=__doc__)
    parser.add_argument("--version", action="version", version=f"usbip-gadget {__version__}")
    parser.add_argument(
        "--timeout", type=_seconds, default=10.0, help="seconds per network step (default 10)"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p_list = sub.add_parser("list", help="list the devices a USB/IP server exports")
    p_list.add_argument("server", metavar="HOST[:PORT]")
    p_list.add_argument(
        "--no-probe", action="store_true", help="do not import each device to read its product"
    )
    p_desc = sub.add_parser("describe", help="import a device, enumerate it, print its descriptors")
    p_desc.add_argument("server", metavar="HOST[:PORT]")
    p_desc.add_argument("busid")
    p_desc.add_argument("--json", action="store_true", help="print the device snapshot as JSON")
    sub.add_parser("udc", help="list this machine's USB device controllers")
    return parser


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    return trio.run(fn)


def _speed_label(value: int) -> str:
    try:
        return Speed(value).label
    except ValueError:
        return "unknown"


def _format_summary(item: DeviceSummary) -> str:
    dev = item.entry.device
    name = item.product if item.product is not None else f"({item.note})" if item.note else ""
    line = f"{dev.busid:<10} {dev.id_vendor:04x}:{dev.id_product:04x}  {_speed_label(dev.speed):<6}"
    return f"{line} {name}".rstrip()


def _cmd_list(args: argparse.Namespace) -> int:
    host, port = parse_address(args.server)
    items = _run(lambda: summarize(host, port, timeout=args.timeout, probe=not args.no_probe))
    if not items:
        print(f"{host}:{port} exports no devices", file=sys.stderr)
    for item in items:
        print(_printable(_format_summary(item)))
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    host, port = parse_address(args.server)
    snapshot = _run(lambda: describe(host, port, args.busid, timeout=args.timeout))
    if args.json:
        print(json.dumps(snapshot.to_json(), indent=2))
    else:
        print(_printable(render_tree(snapshot)))
    return 0


def _cmd_udc(_args: argparse.Namespace) -> int:
    udcs = list_udcs()
    if not udcs:
        raise GadgetError("no USB device controller found", hint=NO_UDC_HINT)
    for name in udcs:
        print(name)
    return 0


_COMMANDS = {"list": _cmd_list, "describe": _cmd_describe, "udc": _cmd_udc}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except UsbipGadgetError as exc:
        print(f"usbip-gadget: {exc.one_line()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("usbip-gadget: interrupted", file=sys.stderr)
        return 130
