"""FunctionFS ep0 events."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usbip_gadget._errors import GadgetError
from usbip_gadget.gadget import Ep0Event, Ep0EventType
from usbip_gadget.gadget.functionfs import pack_event, parse_events
from usbip_gadget.usb import SetupPacket

GET_REPORT = bytes.fromhex("a1 01 00 01 00 00 08 00")


def test_single_setup() -> None:
    (event,) = parse_events(GET_REPORT + bytes((4, 0, 0, 0)))
    assert event == Ep0Event(Ep0EventType.SETUP, SetupPacket(0xA1, 1, 0x0100, 0, 8))


def test_several() -> None:
    data = bytes(8) + b"\0\0\0\0" + bytes(8) + b"\x02\0\0\0" + GET_REPORT + b"\x04\0\0\0"
    events = parse_events(data)
    assert [e.type for e in events] == [Ep0EventType.BIND, Ep0EventType.ENABLE, Ep0EventType.SETUP]
    assert events[0].setup is None
    assert events[2].setup is not None
    assert events[2].setup.w_length == 8


def test_empty_read() -> None:
    assert parse_events(b"") == []


@pytest.mark.parametrize("size", [1, 11, 13, 23])
def test_partial_event(size: int) -> None:
    with pytest.raises(GadgetError):
        parse_events(bytes(size))


def test_unknown_type() -> None:
    with pytest.raises(GadgetError):
        parse_events(bytes(8) + b"\x07\0\0\0")


_events = st.one_of(
    st.sampled_from([t for t in Ep0EventType if t != Ep0EventType.SETUP]).map(Ep0Event),
    st.builds(
        SetupPacket,
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
    ).map(lambda setup: Ep0Event(Ep0EventType.SETUP, setup)),
)


@given(st.lists(_events, max_size=6))
def test_round_trip(events: list[Ep0Event]) -> None:
    assert parse_events(b"".join(pack_event(e) for e in events)) == events


@given(st.binary(max_size=60))
def test_random_bytes_only_raise_gadget_error(data: bytes) -> None:
    with contextlib.suppress(GadgetError):
        parse_events(data)
