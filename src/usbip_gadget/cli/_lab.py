"""``gadget up`` / ``gadget down`` / ``gadget templates``: a lab's source devices in one
command, built from the shipped templates through the project's configfs code."""

from __future__ import annotations

import argparse

from usbip_gadget.cli._parser import usage_error
from usbip_gadget.gadget import (
    choose_udc,
    gadget_lock,
    gadget_up,
    list_udcs,
    load_template,
    remove_gadget,
    template_description,
    template_names,
)


def cmd_gadget(args: argparse.Namespace) -> int:
    if args.action == "templates":
        for name in template_names():
            print(f"{name:<12} {template_description(name)}")
        return 0
    if args.action == "down":
        with gadget_lock(args.target):  # never the gadget of a running attach or listen
            remove_gadget(args.target)
        print(f"{args.target} is down")
        return 0
    template = load_template(args.target, dict(_setting(text) for text in args.set))
    udc = choose_udc(args.udc, list_udcs())
    name = args.name or template.name
    with gadget_lock(name):
        gadget_up(template, name=name, udc=udc)
    print(f"{name} is up on {udc} ({template.vid:04x}:{template.pid:04x} {template.product})")
    return 0


def _setting(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        usage_error(f"--set {text!r}: expected NAME=VALUE")
    return key, value
