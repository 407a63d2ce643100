"""Endpoints described at another speed, and URB intervals (USB 2.0 §9.6.6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.usb.strategies import endpoint_descriptors
from usbip_gadget.usb import (
    EndpointDescriptor,
    Speed,
    TransferType,
    as_full_speed,
    as_high_speed,
    both_speeds,
    urb_interval,
)

CONTROL, ISO, BULK, INTERRUPT = (int(kind) for kind in TransferType)


def _ep(kind: int, max_packet: int, interval: int) -> EndpointDescriptor:
    return EndpointDescriptor(0x81, kind, max_packet, interval)


@pytest.mark.parametrize(
    ("speed", "ep", "expected"),
    [
        (Speed.FULL, _ep(BULK, 64, 0), _ep(BULK, 512, 0)),
        (Speed.SUPER, _ep(BULK, 1024, 0), _ep(BULK, 512, 0)),
        (Speed.HIGH, _ep(BULK, 512, 0), _ep(BULK, 512, 0)),
        (Speed.SUPER, _ep(INTERRUPT, 0x1400, 4), _ep(INTERRUPT, 1024, 4)),
        (Speed.SUPER_PLUS, _ep(ISO, 96, 1), _ep(ISO, 96, 1)),
        # bInterval 10 frames = 80 microframes; the largest power of two below is 64 = 2^6.
        (Speed.FULL, _ep(INTERRUPT, 8, 10), _ep(INTERRUPT, 8, 7)),
        (Speed.LOW, _ep(INTERRUPT, 8, 255), _ep(INTERRUPT, 8, 11)),
        (Speed.FULL, _ep(INTERRUPT, 8, 1), _ep(INTERRUPT, 8, 4)),
        (Speed.FULL, _ep(INTERRUPT, 8, 0), _ep(INTERRUPT, 8, 0)),
        (Speed.FULL, _ep(ISO, 192, 1), _ep(ISO, 192, 4)),
        (Speed.FULL, _ep(ISO, 192, 0), _ep(ISO, 192, 4)),
        (Speed.FULL, _ep(ISO, 192, 16), _ep(ISO, 192, 16)),
        (Speed.FULL, _ep(CONTROL, 64, 0), _ep(CONTROL, 64, 0)),
        (Speed.HIGH, _ep(INTERRUPT, 64, 4), _ep(INTERRUPT, 64, 4)),
    ],
)
def test_as_high_speed(speed: Speed, ep: EndpointDescriptor, expected: EndpointDescriptor) -> None:
    assert as_high_speed(ep, speed) == expected


@pytest.mark.parametrize(
    ("ep", "expected"),
    [
        (_ep(BULK, 512, 0), _ep(BULK, 64, 0)),
        # 2^(4-1) = 8 microframes = 1 frame.
        (_ep(INTERRUPT, 1024, 4), _ep(INTERRUPT, 64, 1)),
        (_ep(INTERRUPT, 8, 1), _ep(INTERRUPT, 8, 1)),
        (_ep(INTERRUPT, 8, 0), _ep(INTERRUPT, 8, 1)),
        (_ep(INTERRUPT, 8, 16), _ep(INTERRUPT, 8, 255)),
        (_ep(INTERRUPT, 8, 9), _ep(INTERRUPT, 8, 32)),
        (_ep(ISO, 0x1400, 4), _ep(ISO, 1023, 1)),
        (_ep(ISO, 192, 8), _ep(ISO, 192, 5)),
        (_ep(ISO, 192, 200), _ep(ISO, 192, 13)),
        (_ep(CONTROL, 64, 0), _ep(CONTROL, 64, 0)),
    ],
)
def test_as_full_speed(ep: EndpointDescriptor, expected: EndpointDescriptor) -> None:
    assert as_full_speed(ep) == expected


def test_unchanged_endpoints_are_returned_as_they_are() -> None:
    ep = _ep(BULK, 512, 0)
    assert as_high_speed(ep, Speed.HIGH) is ep
    control = _ep(CONTROL, 64, 0)
    assert as_full_speed(control) is control


@given(st.integers(1, 255))
def test_full_speed_interrupt_period_round_trips_down(frames: int) -> None:
    """Frames → microframes → frames gives the largest power of two not above the period."""
    high = as_high_speed(_ep(INTERRUPT, 8, frames), Speed.FULL)
    assert 1 << (high.b_interval - 1) <= frames * 8 < 1 << high.b_interval
    back = as_full_speed(high).b_interval
    assert back <= frames < back * 2
    assert back & (back - 1) == 0


@given(st.integers(1, 13))
def test_full_speed_isochronous_interval_round_trips(exponent: int) -> None:
    high = as_high_speed(_ep(ISO, 192, exponent), Speed.FULL)
    assert as_full_speed(high).b_interval == exponent


@given(endpoint_descriptors(), st.sampled_from(Speed))
def test_conversions_keep_everything_else(ep: EndpointDescriptor, speed: Speed) -> None:
    for converted in (as_high_speed(ep, speed), as_full_speed(ep)):
        assert converted.b_endpoint_address == ep.b_endpoint_address
        assert converted.bm_attributes == ep.bm_attributes
        assert converted.extra == ep.extra
        assert (converted.b_refresh, converted.b_synch_address) == (
            ep.b_refresh,
            ep.b_synch_address,
        )


@pytest.mark.parametrize(
    ("ep", "speed", "interval"),
    [
        (_ep(BULK, 512, 5), Speed.HIGH, 0),
        (_ep(CONTROL, 64, 5), Speed.FULL, 0),
        (_ep(INTERRUPT, 64, 4), Speed.HIGH, 8),
        (_ep(INTERRUPT, 64, 4), Speed.SUPER, 8),
        (_ep(INTERRUPT, 8, 10), Speed.FULL, 10),
        (_ep(INTERRUPT, 8, 255), Speed.LOW, 255),
        (_ep(INTERRUPT, 8, 0), Speed.FULL, 1),
        (_ep(INTERRUPT, 8, 0), Speed.HIGH, 1),
        (_ep(INTERRUPT, 8, 20), Speed.HIGH, 1 << 15),
        (_ep(ISO, 192, 1), Speed.FULL, 1),
        (_ep(ISO, 192, 4), Speed.FULL, 8),
        (_ep(ISO, 192, 4), Speed.HIGH, 8),
        (_ep(ISO, 192, 255), Speed.FULL, 1 << 15),
    ],
)
def test_urb_interval(ep: EndpointDescriptor, speed: Speed, interval: int) -> None:
    assert urb_interval(ep, speed) == interval


@given(endpoint_descriptors(), st.sampled_from(Speed))
def test_periodic_endpoints_never_get_interval_zero(ep: EndpointDescriptor, speed: Speed) -> None:
    periodic = ep.transfer_type in (TransferType.INTERRUPT, TransferType.ISOCHRONOUS)
    assert (urb_interval(ep, int(speed)) > 0) == periodic


@given(endpoint_descriptors(), st.sampled_from(Speed))
def test_both_speeds_describes_the_endpoint_at_each_link_speed(
    ep: EndpointDescriptor, speed: Speed
) -> None:
    to_full, to_high = both_speeds(speed)
    full = ep if to_full is None else to_full(ep)
    high = ep if to_high is None else to_high(ep)
    if speed == Speed.HIGH:
        assert (full, high) == (as_full_speed(ep), ep)
    elif speed in (Speed.LOW, Speed.FULL):
        assert (full, high) == (ep, as_high_speed(ep, speed))
    else:
        assert high == as_high_speed(ep, speed)
        assert full == as_full_speed(high)
