"""The commands: each turns its parsed arguments into one call of the layers below, and prints."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

import trio

from usbip_gadget._errors import ExportError, GadgetError, NoBackend, UsbipGadgetError
from usbip_gadget._groups import collapse_single
from usbip_gadget._net import PLAIN, Transport, load_tls, parse_ws_url
from usbip_gadget.bridge import (
    AttachOptions,
    DevicePolicy,
    ListenOptions,
    attach,
    describe_plans,
    listen,
)
from usbip_gadget.cli._args import device_match, parse, serve_selection, server_address
from usbip_gadget.cli._lab import cmd_gadget
from usbip_gadget.cli._parser import tls_files, usage_error
from usbip_gadget.cli._service import cmd_install_service
from usbip_gadget.client import (
    DeviceMatch,
    DeviceSummary,
    describe,
    parse_address,
    parse_redir_url,
    summarize,
)
from usbip_gadget.gadget import (
    KNOWN_ENDPOINT_FILES,
    NO_UDC_HINT,
    Backend,
    Board,
    Check,
    board_checks,
    list_udcs,
    plan_backend,
    plan_json,
    render_plan,
    udc_driver,
)
from usbip_gadget.server import (
    DeviceSource,
    PyusbSource,
    Selection,
    ServeOptions,
    connect,
    serve,
    serve_redirected,
)
from usbip_gadget.usb import DeviceSnapshot, Speed, render_tree

T = TypeVar("T")
# SIGHUP too: the SSH session that started a command dropping must unplug cleanly, not kill.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _printable(text: str) -> str:
    """Text from the network, with control characters escaped so they cannot drive the terminal."""
    return "".join(
        c if c == "\n" or c.isprintable() else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


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


def _transport(
    args: argparse.Namespace, *, server_side: bool, websocket: str | None = None
) -> Transport:
    """The --tls options (checked and loaded now) and ``websocket``, as a ``Transport``."""
    files = tls_files(args)
    if files is None:
        return Transport(websocket=websocket) if websocket is not None else PLAIN
    peer_name = None if server_side else args.tls_peer_name
    tls = load_tls(*files, server_side=server_side, peer_name=peer_name)
    return Transport(tls=tls, websocket=websocket)


def _cmd_list(args: argparse.Namespace) -> int:
    if parse_redir_url(args.server) is not None:
        usage_error("list: a usbredir usb-host has no device list: describe usbredir://HOST:PORT")
    host, port = parse_address(args.server)
    transport = _transport(args, server_side=False)
    probe, deadline = not args.no_probe, args.enumeration_timeout
    items = _run(
        lambda: summarize(
            host, port, timeout=args.timeout, probe=probe, deadline=deadline, transport=transport
        )
    )
    if not items:
        print(f"{host}:{port} exports no devices", file=sys.stderr)
    for item in items:
        print(_printable(_format_summary(item)))
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    device = device_match(args)  # a usage error before any connection
    snapshot = _run(lambda: _describe(args, device))
    if args.json:
        print(json.dumps(snapshot.to_json(), indent=2))
    else:
        print(_printable(render_tree(snapshot)))
    return 0


async def _describe(args: argparse.Namespace, device: DeviceMatch | None) -> DeviceSnapshot:
    host, port, redirect = server_address(args)
    return await describe(
        host, port, device, timeout=args.timeout, deadline=args.enumeration_timeout,
        transport=_transport(args, server_side=False), redirect=redirect,
    )  # fmt: skip


def _cmd_udc(_args: argparse.Namespace) -> int:
    udcs = list_udcs()
    if not udcs:
        raise GadgetError("no USB device controller found", hint=NO_UDC_HINT)
    for name in udcs:
        print(name)
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    checks = [*board_checks(Board()), _check_pyusb()]
    if args.device is not None:
        checks.append(_check_device(*args.device, timeout=args.timeout))
    for check in checks:
        print(_printable(check.line()))
    failed = [check.name for check in checks if not check.ok]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks pass", file=sys.stderr)
    return 1 if failed else 0


def _check_pyusb() -> Check:
    """serve's stack: pyusb and the libusb-1.0 it loads, as ``serve`` loads them."""
    try:
        PyusbSource()
    except ExportError:
        return Check("pyusb", False, "libusb-1.0 cannot be loaded (for serve)",
                     "apt install libusb-1.0-0")  # fmt: skip
    return Check("pyusb", True, "pyusb with libusb-1.0 (for serve)")


def _board_controller(requested: str | None) -> tuple[str | None, str | None]:
    """The controller a plan is made for (``requested``, else the only one) and its driver."""
    udcs = list_udcs()
    udc = requested if requested is not None else (udcs[0] if len(udcs) == 1 else None)
    return udc, udc_driver(udc)


def _check_device(server: str, busid: str, *, timeout: float) -> Check:
    """The device plan against this board's controller, as ``plan`` would make it."""
    udc, driver = _board_controller(None)
    try:
        host, port = parse_address(server)
        snapshot = _run(lambda: describe(host, port, busid, timeout=timeout))
        plan = plan_backend(
            snapshot, Backend.AUTO, endpoint_files=KNOWN_ENDPOINT_FILES.get(driver or ""),
            driver=driver,
        )  # fmt: skip
    except UsbipGadgetError as exc:
        return Check("device", False, f"{busid} on {server}: {exc.one_line()}",
                     "see usbip-gadget plan for the whole plan")  # fmt: skip
    where = udc or "this board's controller"
    return Check("device", True, f"{busid} on {server} replays on {where} with {plan.backend}")


def _log(message: str) -> None:
    print(f"usbip-gadget: {_printable(message)}", file=sys.stderr, flush=True)


def _cmd_attach(args: argparse.Namespace) -> int:
    match = device_match(args)
    host, port, redirect = server_address(args)
    options = AttachOptions(
        host, port, match, udc=args.udc, name=args.name, depth=args.readahead,
        reconnect=args.reconnect, timeout=args.timeout, backend=args.backend,
        bulk_urbs=args.bulk_urbs, policy=_device_policy(args), allow_dfu=args.allow_dfu,
        transport=_transport(args, server_side=False),
        enumeration_timeout=args.enumeration_timeout, redirect=redirect,
    )  # fmt: skip
    if args.dry_run:
        return _print_plan(args, as_json=False)
    _run(lambda: _until_signal(partial(attach, options, log=_log), "unplugging"))
    return 0


def _device_policy(args: argparse.Namespace) -> DevicePolicy:
    return DevicePolicy.of(args.allow, args.allow_class)


def _cmd_plan(args: argparse.Namespace) -> int:
    return _print_plan(args, as_json=args.json)


def _print_plan(args: argparse.Namespace, *, as_json: bool) -> int:
    _udc, driver = _board_controller(args.udc)
    files = KNOWN_ENDPOINT_FILES.get(driver or "")
    device = device_match(args)  # a usage error before any connection
    snapshot = _run(lambda: _describe(args, device))
    verdict = _device_policy(args).verdict(snapshot)
    try:
        plan = plan_backend(snapshot, args.backend, endpoint_files=files, driver=driver)
    except NoBackend as exc:
        if not as_json:
            raise
        refused = {"backend": None, "refused": exc.one_line(), "policy": verdict.to_json()}
        print(json.dumps(refused, indent=2))
        return 1
    urbs = describe_plans(snapshot.configurations[0], args.bulk_urbs)
    if as_json:
        print(json.dumps({**plan_json(plan), "urbs": urbs, "policy": verdict.to_json()}, indent=2))
    else:
        urb_lines = ["URBs per endpoint:", *(f"  {line}" for line in urbs)]
        print(_printable("\n".join([*render_plan(plan), verdict.line(), *urb_lines])))
    return 0 if verdict.allowed else 1


def _cmd_serve(args: argparse.Namespace) -> int:
    selection = serve_selection(args)
    transport = _transport(args, server_side=True)
    source = PyusbSource()
    options = ServeOptions(
        handshake_timeout=args.timeout, idle_timeout=args.idle_timeout,
        max_connections=args.max_connections, max_per_address=args.max_per_address,
    )  # fmt: skip
    serving = partial(
        _serve_until_signal, source, selection, args.bind, args.port,
        transport=transport, options=options, redirect=args.usbredir,
    )  # fmt: skip
    _run(serving)
    return 0


async def _serve_until_signal(
    source: DeviceSource,
    selection: Selection,
    host: str,
    port: int,
    *,
    transport: Transport = PLAIN,
    options: ServeOptions | None = None,
    redirect: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``serve`` (over usbredir with ``redirect``) until SIGINT, SIGTERM or SIGHUP; the
    imported devices are released either way."""
    with trio.open_signal_receiver(*_STOP_SIGNALS) as signals, collapse_single():
        async with trio.open_nursery() as nursery:
            if redirect:
                serving = partial(
                    serve_redirected, source, selection, host=host, port=port, log=_log,
                    options=options,
                )  # fmt: skip
            else:
                serving = partial(
                    serve, source, selection, host=host, port=port, log=_log,
                    transport=transport, options=options,
                )  # fmt: skip
            bound = await nursery.start(serving)
            task_status.started(bound)
            async for signum in signals:
                _log(f"{signal.Signals(signum).name}: stopping")
                nursery.cancel_scope.cancel()
                break


def _cmd_listen(args: argparse.Namespace) -> int:
    options = ListenOptions(
        args.bind, args.port, udc=args.udc, name=args.name, depth=args.readahead,
        timeout=args.timeout, backend=args.backend, bulk_urbs=args.bulk_urbs,
        policy=_device_policy(args), allow_dfu=args.allow_dfu,
        transport=_transport(args, server_side=True, websocket=args.ws),
        enumeration_timeout=args.enumeration_timeout, max_connections=args.max_connections,
        max_per_address=args.max_per_address,
    )  # fmt: skip
    _run(lambda: _until_signal(partial(listen, options, log=_log), "unplugging"))
    return 0


def _cmd_connect(args: argparse.Namespace) -> int:
    host, port, transport = _dialed(args)
    offer = partial(
        connect, PyusbSource(), args.busid, host, port,
        timeout=args.timeout, log=_log, transport=transport,
    )  # fmt: skip
    _run(lambda: _until_signal(offer, "withdrawing"))
    return 0


def _dialed(args: argparse.Namespace) -> tuple[str, int, Transport]:
    """``connect``'s peer: HOST[:PORT] (TLS with the --tls options), or a ws:// or wss:// URL
    (wss needs the --tls options, ws takes none)."""
    if not args.server.startswith(("ws://", "wss://")):
        host, port = parse_address(args.server)
        return host, port, _transport(args, server_side=False)
    url = parse_ws_url(args.server)
    given = tls_files(args) is not None
    if url.secure and not given:
        usage_error("wss:// needs --tls-cert, --tls-key and --tls-ca (mutual TLS)")
    if given and not url.secure:
        usage_error("ws:// is plain: use wss:// with the --tls options")
    return url.host, url.port, _transport(args, server_side=False, websocket=url.path)


async def _until_signal(job: Callable[[], Awaitable[object]], doing: str) -> None:
    """Run ``job`` until it ends or SIGINT/SIGTERM/SIGHUP arrives (then it is cancelled)."""
    with trio.open_signal_receiver(*_STOP_SIGNALS) as signals, collapse_single():
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
    "doctor": _cmd_doctor,
    "attach": _cmd_attach,
    "plan": _cmd_plan,
    "serve": _cmd_serve,
    "listen": _cmd_listen,
    "connect": _cmd_connect,
    "install-service": cmd_install_service,
    "gadget": cmd_gadget,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``usbip-gadget ARGV``; the exit status: 0, 1 on an error (one line on stderr)."""
    args = parse(argv)
    try:
        return _COMMANDS[args.command](args)
    except UsbipGadgetError as exc:
        print(f"usbip-gadget: {exc.one_line()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("usbip-gadget: interrupted", file=sys.stderr)
        return 130
