"""Hostile input: random and mutated bytes only ever raise DescriptorError / SnapshotError."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from functools import partial
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.usb.strategies import bos_descriptors, configurations, snapshots
from tests.usb.vectors import ALL_CONFIGS
from usbip_gadget.usb import (
    Configuration,
    DescriptorError,
    DeviceDescriptor,
    DeviceQualifier,
    DeviceSnapshot,
    HidDescriptor,
    SetupPacket,
    SnapshotError,
    bos_total_length,
    config_total_length,
    decode_lang_ids,
    decode_string,
    parse_bos,
    parse_configuration,
    render_tree,
)

_BYTE_PARSERS: list[Callable[[bytes], object]] = [
    parse_configuration,
    partial(parse_configuration, lenient=True),
    config_total_length,
    parse_bos,
    partial(parse_bos, lenient=True),
    bos_total_length,
    decode_string,
    partial(decode_string, lenient=True),
    decode_lang_ids,
    partial(decode_lang_ids, lenient=True),
    DeviceDescriptor.parse,
    DeviceQualifier.parse,
    HidDescriptor.parse,
    SetupPacket.parse,
]


def _feed(data: bytes) -> None:
    for parse in _BYTE_PARSERS:
        with contextlib.suppress(DescriptorError):
            parse(data)


@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _feed(data)


@given(st.binary(max_size=300), st.sampled_from([2, 15, 3, 1]))
def test_random_bodies_behind_a_valid_header(body: bytes, dtype: int) -> None:
    total = len(body) + (5 if dtype == 15 else 9)
    header = bytes((9, 2, total & 0xFF, total >> 8, 1, 1, 0, 0x80, 50))
    if dtype == 15:
        header = bytes((5, 15, total & 0xFF, total >> 8, 1))
    _feed(header + body)
    _feed(bytes((len(body) + 2, dtype)) + body)


def _mutate(data: st.DataObject, raw: bytes) -> bytes:
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["set", "cut", "insert", "delete"]))
        offset = data.draw(st.integers(0, max(len(mutated) - 1, 0)))
        if action == "set" and mutated:
            mutated[offset] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del mutated[offset:]
        elif action == "insert":
            mutated[offset:offset] = data.draw(st.binary(min_size=1, max_size=4))
        elif mutated:
            del mutated[offset]
    return bytes(mutated)


@given(st.data(), configurations | st.sampled_from(sorted(ALL_CONFIGS.values())))
def test_mutated_configurations(data: st.DataObject, config: Configuration | bytes) -> None:
    raw = config if isinstance(config, bytes) else config.pack()
    mutated = _mutate(data, raw)
    _feed(mutated)
    try:
        lenient = parse_configuration(mutated, lenient=True)
    except DescriptorError:
        return
    # Whatever lenient parsing accepts can be used: packed, and queried.
    lenient.pack()
    lenient.string_indexes()
    lenient.hid_report_lengths()


@given(st.data(), bos_descriptors)
def test_mutated_bos(data: st.DataObject, bos: Any) -> None:
    _feed(_mutate(data, bos.pack()))


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _load(obj: object) -> None:
    try:
        snapshot = DeviceSnapshot.from_json(obj)
    except SnapshotError:
        return
    render_tree(snapshot)


@given(_json)
def test_random_json(obj: object) -> None:
    _load(obj)


def _replace(data: st.DataObject, obj: Any) -> Any:
    """``obj`` with one value somewhere inside replaced by a random JSON value."""
    if isinstance(obj, dict) and obj and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(obj)))
        return {**obj, key: _replace(data, obj[key])}
    if isinstance(obj, list) and obj and data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(obj) - 1))
        return [*obj[:index], _replace(data, obj[index]), *obj[index + 1 :]]
    if isinstance(obj, dict) and obj and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(obj)))
        return {k: v for k, v in obj.items() if k != key}
    return data.draw(_json)


@settings(max_examples=200)
@given(st.data(), snapshots())
def test_mutated_snapshot_json(data: st.DataObject, snapshot: DeviceSnapshot) -> None:
    obj = json.loads(json.dumps(snapshot.to_json()))
    _load(_replace(data, obj))
