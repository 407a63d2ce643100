"""GadgetFS's ep0 machine fed the bytes ep0 gives and the outcomes of the calls it asks for.

Each test plays the driver: it hands the machine what a read of ep0 returned (12-byte records
built with ``pack_event``) or how a call ended, and checks the next action or the events given
to the bridge. No file, thread or trio is involved.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.usb.vectors import CDC_ECM_CONFIG, MASS_STORAGE_DEVICE
from usbip_gadget import GadgetError
from usbip_gadget.gadget import Ep0Event, Ep0EventType
from usbip_gadget.gadget.gadgetfs._ep0 import MAX_READ_AHEAD, GadgetFsEp0
from usbip_gadget.gadget.gadgetfs._ep0_actions import (
    DONE,
    Action,
    Answer,
    CloseEndpoints,
    CollectOutData,
    Deliver,
    Failed,
    HostGone,
    Idle,
    OpenSetting,
    Outcome,
    Read,
    ReadEp0,
    ReadEvents,
    Refused,
    WriteEp0,
)
from usbip_gadget.gadget.gadgetfs._ep0_events import (
    GadgetFsEvent,
    GadgetFsEventType,
    pack_event,
    parse_events,
)
from usbip_gadget.gadget.gadgetfs._ep0_state import Next
from usbip_gadget.usb import DeviceSnapshot, SetupPacket, Speed

# CDC Ethernet: interface 0 (interrupt IN 0x81), interface 1 (setting 0 without endpoints,
# setting 1 with bulk IN 0x82 and bulk OUT 0x01).
CONFIG = DeviceSnapshot.from_raw(
    "1-1", Speed.HIGH, MASS_STORAGE_DEVICE, (CDC_ECM_CONFIG,)
).configurations[0]
CONTROL, DATA, DATA_ON = (*CONFIG.interfaces()[0], *CONFIG.interfaces()[1])
T = GadgetFsEventType
E = Ep0EventType

CONNECT, DISCONNECT, SUSPEND = (pack_event(t) for t in (T.CONNECT, T.DISCONNECT, T.SUSPEND))
GET_STRING = SetupPacket(0x80, 6, 0x0302, 0x0409, 4)
VENDOR_IN = SetupPacket(0xC0, 1, 0, 0, 8)
LINE_CODING = SetupPacket(0x21, 0x20, 0, 0, 7)
CODING = bytes.fromhex("00e10000020207")
CONTROL_LINE = SetupPacket(0x21, 0x22, 3, 0, 0)


def setup(request: SetupPacket) -> bytes:
    return pack_event(T.SETUP, request)


def given_(request: SetupPacket) -> Ep0Event:
    return Ep0Event(E.SETUP, request)


def deliver(*types: Ep0EventType, prefetch: bool = False) -> Deliver:
    return Deliver(tuple(Ep0Event(t) for t in types), prefetch)


def machine() -> GadgetFsEp0:
    return GadgetFsEp0(CONFIG, "/gadgetfs/ep0")


def play(first: Action, ep0: GadgetFsEp0, *outcomes: Outcome) -> list[Action]:
    """``first`` and the actions that follow, each outcome answering the one before."""
    actions = [first]
    for outcome in outcomes:
        actions.append(ep0.send(outcome))
    return actions


def configured() -> GadgetFsEp0:
    ep0 = machine()
    request = Read(CONNECT + setup(SetupPacket.set_configuration(1)))
    assert play(ep0.events(), ep0, request, DONE, DONE)[-1] == deliver(E.ENABLE)
    assert play(ep0.events(), ep0, Read(b""))[-1] == ReadEvents()
    return ep0


# ---------------------------------------------------------------- SET_CONFIGURATION


def test_set_configuration_opens_each_setting_0_then_enables_then_acknowledges() -> None:
    ep0 = machine()
    request = Read(CONNECT + setup(SetupPacket.set_configuration(1)))
    assert play(ep0.events(), ep0, request, DONE, DONE) == [
        ReadEvents(60),
        OpenSetting(CONTROL),
        OpenSetting(DATA),
        deliver(E.ENABLE),
    ]
    assert ep0.state.settings == {0: 0, 1: 0}
    # The status stage waits until the bridge asks for more, after configuring the device.
    assert ep0.state.next is Next.ACKNOWLEDGE
    assert play(ep0.events(), ep0, Read(b"")) == [ReadEp0(0), ReadEvents()]


def test_set_configuration_while_configured_disables_first() -> None:
    ep0 = configured()
    assert ep0.send(Read(setup(SetupPacket.set_configuration(1)))) == deliver(E.DISABLE)
    assert play(ep0.events(), ep0, DONE, DONE, DONE) == [
        CloseEndpoints(None),  # the pumps have stopped: every file closes
        OpenSetting(CONTROL),
        OpenSetting(DATA),
        deliver(E.ENABLE),
    ]
    assert ep0.events() == ReadEp0(0)


def test_configuration_0_is_acknowledged_at_once_once_the_files_are_closed() -> None:
    ep0 = machine()
    assert play(ep0.events(), ep0, Read(setup(SetupPacket.set_configuration(0))))[-1] == (
        ReadEp0(0)
    )
    ep0 = configured()
    assert ep0.send(Read(setup(SetupPacket.set_configuration(0)))) == deliver(E.DISABLE)
    assert play(ep0.events(), ep0, DONE, Read(b"")) == [
        CloseEndpoints(None),
        ReadEp0(0),
        ReadEvents(),
    ]
    assert ep0.state.settings == {}


def test_a_reset_while_configuring_closes_the_files_and_acknowledges_nothing() -> None:
    ep0 = machine()
    gone = Refused(HostGone("ep1in-bulk: the host went away"))
    request = Read(setup(SetupPacket.set_configuration(1)))
    assert play(ep0.events(), ep0, request, gone, DONE)[1:] == [
        OpenSetting(CONTROL),
        CloseEndpoints(None),
        ReadEvents(),  # DISCONNECT comes next
    ]
    assert ep0.state.settings == {}
    assert ep0.state.next is Next.READ


def test_an_endpoint_the_controller_refuses_fails_the_call() -> None:
    ep0 = machine()
    play(ep0.events(), ep0, Read(setup(SetupPacket.set_configuration(1))))
    with pytest.raises(GadgetError, match="refused endpoint"):
        ep0.send(Refused(GadgetError("the controller refused endpoint 0x81")))


# ---------------------------------------------------------------- SET_INTERFACE


def test_set_interface_suspends_switches_the_files_acknowledges_then_resumes() -> None:
    ep0 = configured()
    to_1 = SetupPacket.set_interface(1, 1)
    assert ep0.send(Read(setup(to_1))) == Deliver((Ep0Event(E.SUSPEND), given_(to_1)))
    # The bridge applied it on the device: the files switch, then the status stage.
    assert play(ep0.receive(), ep0, DONE, DONE, Read(b"")) == [
        CloseEndpoints(()),  # setting 0 of interface 1 has no endpoints
        OpenSetting(DATA_ON),
        ReadEp0(0),
        Answer(b""),
    ]
    assert ep0.state.settings == {0: 0, 1: 1}
    assert ep0.events() == deliver(E.RESUME)
    to_0 = SetupPacket.set_interface(1, 0)
    play(ep0.events(), ep0, Read(setup(to_0)))
    assert play(ep0.receive(), ep0, DONE)[:2] == [CloseEndpoints((0x82, 0x01)), OpenSetting(DATA)]


def test_a_setting_the_controller_refuses_is_stalled_then_the_error_raised() -> None:
    ep0 = configured()
    ep0.send(Read(setup(SetupPacket.set_interface(1, 1))))
    assert play(ep0.receive(), ep0, DONE, Refused(HostGone("gone"))) == [
        CloseEndpoints(()),
        OpenSetting(DATA_ON),
        WriteEp0(b""),  # the host sees the setting refused, not a timeout
    ]
    with pytest.raises(HostGone, match="gone"):
        ep0.send(Failed(errno.EL2HLT))
    assert ep0.state.settings == {0: 0, 1: 0}


def test_set_interface_unconfigured_or_to_an_unknown_setting_is_only_acknowledged() -> None:
    ep0 = machine()
    to_1 = SetupPacket.set_interface(1, 1)
    assert play(ep0.events(), ep0, Read(setup(to_1)))[-1] == Deliver((given_(to_1),))
    assert ep0.receive() == ReadEp0(0)
    ep0 = configured()
    ep0.send(Read(setup(SetupPacket.set_interface(1, 7))))
    assert ep0.receive() == ReadEp0(0)


# ---------------------------------------------------------------- DISCONNECT


def test_a_disconnect_disables_and_the_files_close_on_the_next_call() -> None:
    ep0 = configured()
    assert ep0.send(Read(DISCONNECT)) == deliver(E.DISABLE)
    assert play(ep0.events(), ep0, DONE) == [CloseEndpoints(None), ReadEvents()]
    assert ep0.state.settings == {}


def test_a_disconnect_while_unconfigured_gives_nothing() -> None:
    ep0 = machine()
    assert play(ep0.events(), ep0, Read(CONNECT + DISCONNECT + SUSPEND))[-1] == ReadEvents()


# ---------------------------------------------------------------- data stages


def test_in_replies_are_cut_to_wlength() -> None:
    ep0 = machine()
    assert play(ep0.events(), ep0, Read(setup(GET_STRING)))[-1] == Deliver((given_(GET_STRING),))
    assert play(ep0.reply(b"\x0a\x03a\x00b\x00c\x00d\x00"), ep0, DONE) == [
        WriteEp0(b"\x0a\x03a\x00"),
        Answer(),
    ]
    ep0.reply(b"")
    with pytest.raises(GadgetError, match=r"^/gadgetfs/ep0: Input/output error$"):
        ep0.send(Failed(errno.EIO))


def test_out_data_is_read_right_after_its_event_and_received_without_a_call() -> None:
    ep0 = machine()
    assert play(ep0.events(), ep0, Read(setup(LINE_CODING)), Read(CODING)) == [
        ReadEvents(),
        ReadEp0(7),
        Deliver((given_(LINE_CODING),), prefetch=True),  # ep0 is out of any SETUP now
    ]
    assert ep0.receive() == Answer(CODING)
    with pytest.raises(GadgetError, match="the host sent no data for 2120000000000700"):
        ep0.receive()


def test_out_data_not_sent_yet_is_waited_for() -> None:
    ep0 = machine()
    outcomes = (Read(setup(LINE_CODING)), Failed(errno.EAGAIN), Read(CODING))
    assert play(ep0.events(), ep0, *outcomes)[2:] == [
        CollectOutData(7),
        Deliver((given_(LINE_CODING),), prefetch=True),
    ]


@pytest.mark.parametrize("early", [errno.EIDRM, errno.EIO])
def test_an_out_request_whose_data_is_lost_is_dropped_without_touching_ep0(early: int) -> None:
    ep0 = machine()
    assert play(ep0.events(), ep0, Read(setup(LINE_CODING)), Failed(early))[-1] == ReadEvents()
    outcomes = (Read(setup(LINE_CODING)), Failed(errno.EAGAIN), Failed(errno.ECANCELED))
    assert play(ep0.events(), ep0, *outcomes)[-1] == ReadEvents()


def test_an_out_request_without_data_is_acknowledged_when_received() -> None:
    ep0 = machine()
    play(ep0.events(), ep0, Read(setup(CONTROL_LINE)))
    assert play(ep0.receive(), ep0, Read(b"")) == [ReadEp0(0), Answer()]
    assert play(ep0.receive(), ep0, Failed(errno.EIDRM))[-1] == Answer()  # the host went on
    ep0.receive()
    with pytest.raises(GadgetError, match="cannot acknowledge: Input/output error"):
        ep0.send(Failed(errno.EIO))


@pytest.mark.parametrize(
    ("request_", "wrong_way"), [(VENDOR_IN, ReadEp0(1)), (CONTROL_LINE, WriteEp0(b""))]
)
def test_a_stall_is_io_the_wrong_way(request_: SetupPacket, wrong_way: Action) -> None:
    ep0 = machine()
    play(ep0.events(), ep0, Read(setup(request_)))
    assert play(ep0.stall(), ep0, Failed(errno.EL2HLT)) == [wrong_way, Answer()]
    ep0.stall()
    with pytest.raises(GadgetError, match="cannot stall: Input/output error"):
        ep0.send(Failed(errno.EIO))


# ---------------------------------------------------------------- requests the host replaced


def test_eidrm_reads_again() -> None:
    ep0 = machine()
    outcomes = (Failed(errno.EIDRM), Read(setup(VENDOR_IN)))
    assert play(ep0.events(), ep0, *outcomes)[1:] == [ReadEvents(), Deliver((given_(VENDOR_IN),))]
    assert not ep0.state.stale


def test_a_request_stalled_before_its_event_was_read_is_skipped() -> None:
    ep0 = machine()
    # The read stalled a request whose event was queued: that event, read next, is stale.
    outcomes = (Failed(errno.EL2HLT), Read(setup(GET_STRING)), Failed(errno.EL2HLT))
    assert play(ep0.events(), ep0, *outcomes)[1:] == [ReadEvents(), ReadEp0(1), ReadEvents()]
    assert ep0.send(Read(setup(VENDOR_IN))) == Deliver((given_(VENDOR_IN),))


def test_out_data_read_in_place_of_events_makes_the_next_request_stale() -> None:
    ep0 = machine()
    outcomes = (Read(CODING), Read(setup(GET_STRING)), Failed(errno.EL2HLT))
    assert play(ep0.events(), ep0, *outcomes)[1:] == [ReadEvents(), ReadEp0(1), ReadEvents()]
    assert not ep0.state.stale


def test_a_stale_out_request_whose_read_stalls_leaves_the_next_one_stale() -> None:
    ep0 = machine()
    outcomes = (Read(CODING), Read(setup(LINE_CODING)), Failed(errno.EAGAIN))
    # The stale request's SETUP is ended by reading its data stage; EL2HLT instead means a
    # newer IN request was in its SETUP, and that one's event is stale too.
    assert play(ep0.events(), ep0, *outcomes)[2:] == [ReadEp0(7), ReadEp0(7)]
    assert ep0.send(Failed(errno.EL2HLT)) == ReadEvents()
    assert ep0.state.stale
    # CONNECT and DISCONNECT purge GadgetFS's queue: nothing read after them is stale.
    assert ep0.send(Read(CONNECT + setup(VENDOR_IN))) == Deliver((given_(VENDOR_IN),))


@pytest.mark.parametrize(
    ("request_", "early", "ending"),
    [
        (GET_STRING, (), ReadEp0(1)),
        (LINE_CODING, (Failed(errno.EAGAIN),), ReadEp0(7)),  # its data not read early
        (CONTROL_LINE, (), WriteEp0(b"")),
    ],
)
def test_a_stale_request_s_setup_is_ended_by_the_call_that_stalls_or_completes_it(
    request_: SetupPacket, early: tuple[Outcome, ...], ending: Action
) -> None:
    ep0 = machine()
    outcomes = (Failed(errno.EL2HLT), Read(setup(request_)), *early)
    assert play(ep0.events(), ep0, *outcomes)[-1] == ending
    assert ep0.send(DONE if isinstance(ending, WriteEp0) else Read(b"")) == ReadEvents()


# ---------------------------------------------------------------- batches


def test_a_reset_read_in_one_batch_with_the_next_request_is_given_in_turns() -> None:
    ep0 = configured()
    batch = Read(DISCONNECT + CONNECT + setup(GET_STRING))
    assert ep0.send(batch) == deliver(E.DISABLE)
    # The rest of the batch comes without reading ep0 again, once the files are closed.
    assert play(ep0.events(), ep0, DONE) == [CloseEndpoints(None), Deliver((given_(GET_STRING),))]


def test_five_events_in_one_read() -> None:
    ep0 = machine()
    batch = Read(CONNECT + SUSPEND + DISCONNECT + CONNECT + setup(GET_STRING))
    assert play(ep0.events(), ep0, batch) == [ReadEvents(60), Deliver((given_(GET_STRING),))]


def test_the_first_read_after_binding_is_kept_for_the_bridge() -> None:
    ep0 = machine()
    assert play(ep0.claim(), ep0, Read(CONNECT + setup(GET_STRING))) == [ReadEp0(60), Idle()]
    assert ep0.events() == Deliver((given_(GET_STRING),))
    ep0 = machine()
    assert play(ep0.claim(), ep0, Failed(errno.EAGAIN))[-1] == Idle()


def test_requests_sent_while_an_out_request_is_forwarded_are_read_meanwhile() -> None:
    ep0 = machine()
    second = SetupPacket(0x21, 0x20, 0, 1, 7)
    play(ep0.events(), ep0, Read(setup(LINE_CODING)), Read(CODING))
    assert ep0.receive() == Answer(CODING)
    ahead = (Read(setup(second)), Failed(errno.EAGAIN), Read(b"2" * 7), Read(setup(GET_STRING)))
    assert play(ep0.prefetch(), ep0, *ahead) == [
        ReadEvents(),
        ReadEp0(7),
        CollectOutData(7),
        ReadEvents(),
        Idle(),  # ep0 is in GET_STRING's SETUP until the bridge answers it
    ]
    assert ep0.events() == Deliver((given_(second),))  # GET_STRING waits: no prefetch
    assert ep0.receive() == Answer(b"2" * 7)
    assert ep0.events() == Deliver((given_(GET_STRING),))


def test_a_prefetch_stopped_while_waiting_leaves_nothing_pending() -> None:
    ep0 = machine()
    play(ep0.events(), ep0, Read(setup(LINE_CODING)), Read(CODING))
    assert ep0.prefetch() == ReadEvents()
    assert ep0.events() == ReadEvents()
    assert ep0.send(Read(setup(VENDOR_IN))) == Deliver((given_(VENDOR_IN),))


# ---------------------------------------------------------------- hostile input


def test_a_partial_record_is_a_gadget_error() -> None:
    with pytest.raises(GadgetError, match="13 bytes is not a whole number"):
        parse_events(setup(GET_STRING) + b"\x00")


def test_an_unknown_event_type_is_no_event() -> None:
    # A 12-byte OUT data stage read where events were expected parses as one.
    assert parse_events(pack_event(77)) == [GadgetFsEvent(77)]
    ep0 = machine()
    batch = Read(pack_event(77) + pack_event(T.NOP) + setup(GET_STRING))
    assert play(ep0.events(), ep0, batch)[-1] == Deliver((given_(GET_STRING),))


def test_an_outcome_nothing_waits_for_is_the_drivers_mistake() -> None:
    with pytest.raises(RuntimeError, match="no action waits"):
        machine().send(DONE)


@given(st.sampled_from(list(T)), st.binary(min_size=8, max_size=8))
def test_events_round_trip(kind: GadgetFsEventType, union: bytes) -> None:
    request = SetupPacket.parse(union) if kind == T.SETUP else None
    assert parse_events(pack_event(kind, request)) == [GadgetFsEvent(kind, request)]


_ERRNOS = st.sampled_from([errno.EIDRM, errno.EL2HLT, errno.EAGAIN, errno.EIO, errno.ESHUTDOWN])
_RECORDS = st.builds(
    lambda kind, union: union + kind.to_bytes(4, "little"),
    st.integers(0, 6),
    st.binary(min_size=8, max_size=8),
)
_READS = st.one_of(
    st.binary(max_size=64).map(Read),
    st.lists(_RECORDS, max_size=5).map(b"".join).map(Read),
    _ERRNOS.map(Failed),
)


def _outcome(draw: st.DrawFn, action: Action) -> Outcome:
    if isinstance(action, ReadEvents | ReadEp0 | CollectOutData):
        read: Outcome = draw(_READS)
        return read
    if isinstance(action, OpenSetting):
        opened: list[Outcome] = [DONE, Refused(HostGone("gone")), Refused(GadgetError("no"))]
        return draw(st.sampled_from(opened))
    if isinstance(action, WriteEp0):
        return draw(st.one_of(st.just(DONE), _ERRNOS.map(Failed)))
    return DONE


@st.composite
def _histories(draw: st.DrawFn) -> None:
    """Drive a machine with whatever ep0 might give; only ``GadgetError`` may escape."""
    ep0 = machine()
    action = ep0.claim() if draw(st.booleans()) else ep0.events()
    for _ in range(40):
        if isinstance(action, Deliver | Answer | Idle):
            calls: list[Callable[[], Action]] = [ep0.events, ep0.stall, ep0.receive]
            calls.append(partial(ep0.reply, b"x" * 9))
            if isinstance(action, Deliver) and action.prefetch:
                calls.append(ep0.prefetch)
            action = draw(st.sampled_from(calls))()
        else:
            action = ep0.send(_outcome(draw, action))


@given(st.data())
def test_whatever_ep0_gives_only_a_gadget_error_escapes(data: st.DataObject) -> None:
    with contextlib.suppress(GadgetError):
        data.draw(_histories())


def test_a_host_flooding_ep0_during_a_prefetch_is_read_ahead_only_so_far() -> None:
    # While the bridge forwards an OUT request, a hostile host sends event after event (each
    # OUT request's data is taken by the controller at once): the prefetch keeps at most
    # MAX_READ_AHEAD of them and leaves the rest to GadgetFS's own bounded queue.
    ep0 = machine()
    play(ep0.events(), ep0, Read(setup(LINE_CODING)), Read(CODING))
    assert ep0.receive() == Answer(CODING)
    action, reads = ep0.prefetch(), 0
    while isinstance(action, ReadEvents) and reads < 1000:
        action, reads = ep0.send(Read(SUSPEND * 5)), reads + 1
    assert action == Idle()
    assert reads * 5 <= MAX_READ_AHEAD + 5
