"""``--config FILE``: a command's options in a TOML file, the same option set as its flags.

The file's keys are the command's long options without their dashes (``bulk-urbs``,
``allow-class``, ``tls-cert``), its positional arguments by name (``server``, ``busid``) and
the global options (``timeout``, ``enumeration-timeout``). Nothing here lists them: they are
read off the command's parser, so a new flag is a new key, checked by the same function as
the flag. A flag given on the command line wins over the file; a repeatable flag (``allow``)
adds to the file's list. A relative path (the ``FILE`` options) is taken from the file's
folder.

    server = "scanner-host:3240"
    device = "04a9:1909"
    reconnect = true
    allow = ["04a9:1909"]
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Options that are never keys: the file cannot name itself, nor print help.
_NOT_KEYS = frozenset({"help", "version", "config", "command", "dry-run"})


class ConfigError(Exception):
    """A config file that cannot be used: the message names the file and, if known, the key."""


def load_config(path: str, parsers: Sequence[argparse.ArgumentParser]) -> list[dict[str, Any]]:
    """The file's values as defaults for each parser in ``parsers`` (global options first,
    then the command's): one ``{dest: value}`` per parser, every value checked and converted
    as its flag would be. Raises ``ConfigError`` on the first problem."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not TOML: not UTF-8 text") from None
    keyed = [_keys(parser) for parser in parsers]
    found: list[dict[str, Any]] = [{} for _ in parsers]
    for key, value in data.items():
        for keys, into in zip(keyed, found, strict=True):
            if key in keys:
                action = keys[key]
                into[action.dest] = _convert(action, value, f"{path}: {key}", Path(path).parent)
                break
        else:
            known = ", ".join(sorted(k for keys in keyed for k in keys))
            raise ConfigError(f"{path}: unknown key {key!r} (known: {known})")
    return found


def _keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    keys: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        long = [o for o in action.option_strings if o.startswith("--")]
        key = long[0][2:] if long else action.dest
        if action.option_strings and not long:
            continue
        if key not in _NOT_KEYS and action.dest not in _NOT_KEYS:
            keys[key] = action
    return keys


def _convert(action: argparse.Action, value: object, where: str, folder: Path) -> object:
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_scalar(action, item, where, folder) for item in items]
    return _scalar(action, value, where, folder)


def _scalar(action: argparse.Action, value: object, where: str, folder: Path) -> object:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{where}: expected text or a number, got {value!r}")
    text = str(value)
    if action.metavar == "FILE" and not Path(text).is_absolute():
        text = str(folder / text)
    try:
        converted = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, ValueError) as exc:
        if action.choices is None:
            raise ConfigError(f"{where}: {exc}") from None
        converted = None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(str(c) for c in action.choices)
        raise ConfigError(f"{where}: {text!r} is not one of {choices}")
    return converted
