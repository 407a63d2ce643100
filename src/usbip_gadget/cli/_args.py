"""The parsed command line: flags over a ``--config`` file's values, and the checks a
command's options must pass together before it runs (shared with ``install-service``,
which checks a service's config file the way its command will)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from usbip_gadget._errors import UsbipGadgetError
from usbip_gadget.cli._config import ConfigError, load_config
from usbip_gadget.cli._parser import build_parser, command_parser, tls_files, usage_error
from usbip_gadget.client import REDIR_SCHEME, DeviceMatch, parse_address, parse_redir_url
from usbip_gadget.server import Selection, check_busid

# A device chosen on the command line replaces the file's choice, whichever way each names it.
_BY_BUSID, _BY_WHAT = ("busid",), ("device", "serial", "product")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, with a ``--config`` file's values as the defaults of its flags."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None) is None:
        return args
    command = command_parser(parser, args.command)
    try:
        top, own = load_config(args.config, [parser, command])
    except ConfigError as exc:
        usage_error(str(exc))
    parser.set_defaults(**top)
    command.set_defaults(**own)
    args = parser.parse_args(argv)
    if args.command == "attach":
        _one_argument_is_the_busid(args, own)
        _flag_wins(args, own)
    return args


def _one_argument_is_the_busid(args: argparse.Namespace, from_file: dict[str, object]) -> None:
    """With the server in the file, ``attach --config FILE 1-1`` names the bus ID: argparse
    fills the first positional, so one shaped like a bus ID moves to its place."""
    server = from_file.get("server")
    if server is None or args.server == server or args.busid != from_file.get("busid"):
        return
    try:
        check_busid(args.server)
    except UsbipGadgetError:
        return
    args.busid, args.server = args.server, server


def _flag_wins(args: argparse.Namespace, from_file: dict[str, object]) -> None:
    """A bus ID given beside a file that names the device by what it is (or the reverse)
    replaces the file's choice, as any flag replaces a key."""

    def given(dests: tuple[str, ...]) -> bool:
        return any(getattr(args, d) is not None and getattr(args, d) != from_file.get(d)
                   for d in dests)  # fmt: skip

    for mine, theirs in ((_BY_BUSID, _BY_WHAT), (_BY_WHAT, _BY_BUSID)):
        if given(mine) and not given(theirs):
            for dest in theirs:
                if dest in from_file:
                    setattr(args, dest, None)


def server_address(args: argparse.Namespace) -> tuple[str, int, bool]:
    """(host, port, whether it is a usbredir usb-host) of the command's SERVER."""
    redirect = parse_redir_url(args.server)
    if redirect is not None:
        return (*redirect, True)
    return (*parse_address(args.server), False)


def device_match(args: argparse.Namespace) -> DeviceMatch | None:
    """The device of ``attach``, ``plan`` or ``describe``: BUSID, or --device VID:PID with
    --serial and --product; from a usbredir usb-host, its one device (None) or a match."""
    command = args.command
    if args.server is None:
        usage_error(f"{command}: give HOST[:PORT], or server in the --config file")
    if args.server.startswith(f"{REDIR_SCHEME}://"):
        return _redirected_match(args)
    if args.device is None:
        if args.serial is not None or args.product is not None:
            usage_error("--serial and --product go with --device VID:PID")
        if args.busid is None:
            usage_error(f"{command}: give a BUSID or --device VID:PID")
        return DeviceMatch(busid=args.busid)
    if args.busid is not None:
        usage_error(f"{command}: give a BUSID ({args.busid}) or --device, not both")
    return DeviceMatch(vid_pid=args.device, serial=args.serial, product=args.product)


def _redirected_match(args: argparse.Namespace) -> DeviceMatch | None:
    """A usbredir usb-host offers one device and speaks plain TCP only."""
    if args.busid is not None:
        usage_error(f"{args.command}: a usbredir usb-host offers one device: no BUSID")
    if tls_files(args) is not None:
        usage_error("usbredir:// is plain TCP: the --tls options are for USB/IP servers")
    if args.device is None:
        if args.serial is not None or args.product is not None:
            usage_error("--serial and --product go with --device VID:PID")
        return None
    return DeviceMatch(vid_pid=args.device, serial=args.serial, product=args.product)


def serve_selection(args: argparse.Namespace) -> Selection:
    """What ``serve`` exports: never nothing."""
    selection = Selection.of(args.allow, args.busid)
    if selection.empty:
        usage_error("serve: nothing is exported unless selected: use --allow or --busid")
    return selection


def check_together(args: argparse.Namespace) -> None:
    """What a command checks of its options before it runs (exit 2 on the first problem)."""
    if args.command == "attach":
        device_match(args)
    elif args.command == "serve":
        serve_selection(args)
    tls_files(args)
