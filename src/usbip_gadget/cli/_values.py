"""How each value on the command line is checked: an argparse type per kind of value, each
failing with one line that says what was expected."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

from usbip_gadget._errors import UsbipGadgetError

T = TypeVar("T")
MAX_DEPTH = 64


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def ws_path(text: str) -> str:
    if not text.startswith("/") or any(c.isspace() or c in "?#" for c in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL path like /usbip")
    return text


def depth(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_DEPTH:
        raise argparse.ArgumentTypeError(f"{text!r} is not a depth from 1 to {MAX_DEPTH}")
    return value


def count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def gadget_name(text: str) -> str:
    if not text or not all(c.isascii() and (c.isalnum() or c in "-_") for c in text):
        raise argparse.ArgumentTypeError(f"{text!r}: use letters, digits, - and _")
    return text


def port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1 to 65535)")
    return int(text)


def argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser that raises ``UsbipGadgetError``."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except UsbipGadgetError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert
