"""Command line: argument parsing, ``trio.run`` and printing; the work is done elsewhere."""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

import trio

from usbip_gadget import __version__
from usbip_gadget._errors import GadgetError, NoBackend, UsbipGadgetError
from usbip_gadget._groups import collapse_single
from usbip_gadget.bridge import (
    BULK_URBS,
    DEFAULT_DEPTH,
    DEFAULT_LISTEN,
    AttachOptions,
    ListenOptions,
    attach,
    describe_plans,
    listen,
)
from usbip_gadget.client import DeviceSummary, describe, parse_address, summarize
from usbip_gadget.gadget import (
    KNOWN_ENDPOINT_FILES,
    NO_UDC_HINT,
    Backend,
    list_udcs,
    plan_backend,
    plan_json,
    render_plan,
    udc_driver,
)
from usbip_gadget.protocol import DEFAULT_PORT
from usbip_gadget.server import (
    DEFAULT_BIND,
    DeviceSource,
    PyusbSource,
    Selection,
    check_busid,
    connect,
    parse_vid_pid,
    serve,
)
from usbip_gadget.usb import Speed, render_tree

T = TypeVar("T")
MAX_DEPTH = 64


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


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="usbip-gadget",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    p_attach = sub.add_parser(
        "attach", help="replay a remote device on a USB device controller and bridge its traffic"
    )
    p_attach.add_argument("server", metavar="HOST[:PORT]")
    p_attach.add_argument("busid")
    _add_gadget_options(p_attach)
    p_attach.add_argument(
        "--reconnect", action="store_true", help="when the device goes away, wait for it"
    )
    p_attach.add_argument(
        "--dry-run", action="store_true",
        help="print the plan (backend, what the host will see differently) and plug nothing",
    )  # fmt: skip
    p_plan = sub.add_parser(
        "plan",
        help="which backend would replay a remote device, and what the host sees differently",
    )
    p_plan.add_argument("server", metavar="HOST[:PORT]")
    p_plan.add_argument("busid")
    p_plan.add_argument("--udc", help="the controller it would be plugged into")
    p_plan.add_argument(
        "--backend", type=Backend, choices=list(Backend), default=Backend.AUTO,
        help="(default auto)",
    )  # fmt: skip
    p_plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    _add_bulk_urbs(p_plan)
    _serve_parser(sub)
    _connect_parsers(sub)
    return parser


def _serve_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p_serve = sub.add_parser("serve", help="export local USB devices to USB/IP clients")
    p_serve.add_argument(
        "--bind", default=DEFAULT_BIND, metavar="ADDR",
        help=f"address to listen on (default {DEFAULT_BIND}: this machine only)",
    )  # fmt: skip
    p_serve.add_argument("--port", type=_port, default=DEFAULT_PORT, help="TCP port (3240)")
    p_serve.add_argument(
        "--allow", type=_argument(parse_vid_pid), action="append", default=[],
        metavar="VID:PID", help="export the devices with this idVendor:idProduct (repeatable)",
    )  # fmt: skip
    p_serve.add_argument(
        "--busid", type=_argument(check_busid), action="append", default=[],
        help="export the device at this bus ID, like 1-1 (repeatable)",
    )  # fmt: skip


def _add_gadget_options(parser: argparse.ArgumentParser) -> None:
    """Where and how a bridged device is replayed (attach, listen)."""
    parser.add_argument("--udc", help="the controller to plug into (default: the only one)")
    parser.add_argument(
        "--name", default="usbip-gadget", type=_gadget_name, help="configfs gadget name"
    )
    parser.add_argument(
        "--backend", type=Backend, choices=list(Backend), default=Backend.AUTO,
        help="kernel interface: functionfs, gadgetfs, or auto (FunctionFS when it can express "
        "the device, else GadgetFS; the default)",
    )  # fmt: skip
    parser.add_argument(
        "--readahead", type=_depth, default=DEFAULT_DEPTH, metavar="N",
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


def _connect_parsers(sub: argparse._SubParsersAction[_Parser]) -> None:
    p_listen = sub.add_parser(
        "listen", help="wait for a device side to offer a device (connect), and bridge it"
    )
    p_listen.add_argument(
        "--bind", default=DEFAULT_LISTEN, metavar="ADDR",
        help=f"address to listen on (default {DEFAULT_LISTEN}: this machine only)",
    )  # fmt: skip
    p_listen.add_argument("--port", type=_port, default=DEFAULT_PORT, help="TCP port (3240)")
    _add_gadget_options(p_listen)
    p_connect = sub.add_parser(
        "connect", help="offer a local USB device to a listening gadget side, and serve it"
    )
    p_connect.add_argument("server", metavar="HOST[:PORT]")
    p_connect.add_argument("busid", type=_argument(check_busid))


def _depth(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_DEPTH:
        raise argparse.ArgumentTypeError(f"{text!r} is not a depth from 1 to {MAX_DEPTH}")
    return value


def _gadget_name(text: str) -> str:
    if not text or not all(c.isalnum() or c in "-_" for c in text):
        raise argparse.ArgumentTypeError(f"{text!r}: use letters, digits, - and _")
    return text


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1 to 65535)")
    return int(text)


def _argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser that raises ``UsbipGadgetError``."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except UsbipGadgetError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


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


def _log(message: str) -> None:
    print(f"usbip-gadget: {_printable(message)}", file=sys.stderr, flush=True)


def _cmd_attach(args: argparse.Namespace) -> int:
    host, port = parse_address(args.server)
    options = AttachOptions(
        host, port, args.busid, udc=args.udc, name=args.name, depth=args.readahead,
        reconnect=args.reconnect, timeout=args.timeout, backend=args.backend,
        bulk_urbs=args.bulk_urbs,
    )  # fmt: skip
    if args.dry_run:
        return _print_plan(args, as_json=False)
    _run(lambda: _until_signal(partial(attach, options, log=_log), "unplugging"))
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    return _print_plan(args, as_json=args.json)


def _print_plan(args: argparse.Namespace, *, as_json: bool) -> int:
    host, port = parse_address(args.server)
    udcs = list_udcs()
    udc = args.udc if args.udc is not None else (udcs[0] if len(udcs) == 1 else None)
    driver = udc_driver(udc)
    files = KNOWN_ENDPOINT_FILES.get(driver or "")
    snapshot = _run(lambda: describe(host, port, args.busid, timeout=args.timeout))
    try:
        plan = plan_backend(snapshot, args.backend, endpoint_files=files, driver=driver)
    except NoBackend as exc:
        if not as_json:
            raise
        print(json.dumps({"backend": None, "refused": exc.one_line()}, indent=2))
        return 1
    urbs = describe_plans(snapshot.configurations[0], args.bulk_urbs)
    if as_json:
        print(json.dumps({**plan_json(plan), "urbs": urbs}, indent=2))
    else:
        lines = [*render_plan(plan), "URBs per endpoint:", *(f"  {line}" for line in urbs)]
        print(_printable("\n".join(lines)))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    selection = Selection.of(args.allow, args.busid)
    if selection.empty:
        _Parser().error("serve: nothing is exported unless selected: use --allow or --busid")
    source = PyusbSource()
    _run(lambda: _serve_until_signal(source, selection, args.bind, args.port))
    return 0


async def _serve_until_signal(
    source: DeviceSource,
    selection: Selection,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``serve`` until SIGINT or SIGTERM; the imported devices are released either way."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals, collapse_single():
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(
                partial(serve, source, selection, host=host, port=port, log=_log)
            )
            task_status.started(bound)
            async for signum in signals:
                _log(f"{signal.Signals(signum).name}: stopping")
                nursery.cancel_scope.cancel()
                break


def _cmd_listen(args: argparse.Namespace) -> int:
    options = ListenOptions(
        args.bind, args.port, udc=args.udc, name=args.name, depth=args.readahead,
        timeout=args.timeout, backend=args.backend, bulk_urbs=args.bulk_urbs,
    )  # fmt: skip
    _run(lambda: _until_signal(partial(listen, options, log=_log), "unplugging"))
    return 0


def _cmd_connect(args: argparse.Namespace) -> int:
    host, port = parse_address(args.server)
    offer = partial(connect, PyusbSource(), args.busid, host, port, timeout=args.timeout, log=_log)
    _run(lambda: _until_signal(offer, "withdrawing"))
    return 0


async def _until_signal(job: Callable[[], Awaitable[object]], doing: str) -> None:
    """Run ``job`` until it ends or SIGINT/SIGTERM arrives (then it is cancelled)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals, collapse_single():
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    _log(f"{signal.Signals(signum).name}: {doing}")
                    nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            await job()
            nursery.cancel_scope.cancel()


_COMMANDS = {
    "list": _cmd_list,
    "describe": _cmd_describe,
    "udc": _cmd_udc,
    "attach": _cmd_attach,
    "plan": _cmd_plan,
    "serve": _cmd_serve,
    "listen": _cmd_listen,
    "connect": _cmd_connect,
}


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
