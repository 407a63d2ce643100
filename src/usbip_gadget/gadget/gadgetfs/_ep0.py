"""GadgetFS's ep0 as a state machine without I/O (legacy/inode.c): its events and the
outcomes of system calls in, the bridge's events and the next system call out.

ep0 gives 12-byte events (``_ep0_events``): CONNECT (on the first SETUP), DISCONNECT (unplug
or bus reset), SUSPEND, and SETUP for every request the kernel does not answer itself:
strings, class, vendor and interface requests, SET_INTERFACE, and SET_CONFIGURATION, which
the kernel has accepted but whose status stage waits for user space. The bridge sees the
same events as from FunctionFS:

- SET_CONFIGURATION → DISABLE (if configured), then the endpoint files of every interface's
  alternate setting 0 are opened and configured, then ENABLE; the status stage is sent
  when the bridge asks for the next events, after it configured the remote device;
- SET_INTERFACE → SUSPEND (the pumps stop), the SETUP itself (the bridge applies it on the
  remote device, then acknowledges it: the interface's endpoint files are switched to the
  new setting first), then RESUME;
- DISCONNECT → DISABLE; the endpoint files are closed once the pumps have stopped.

GadgetFS has no resume event, so SUSPEND from the bus is not passed on: the remote device
is not suspended, and its read-ahead stays queued.

A SETUP is answered on ep0: ``write`` sends IN data, ``read`` of length 0 acknowledges an OUT
request without data, ``read`` of wLength collects OUT data (polled: GadgetFS reports it by
no event), and I/O the wrong way stalls (EL2HLT). EIDRM means the host replaced the request.
How the driver drives it: ``_ep0_actions``.
"""

from __future__ import annotations

import errno
from collections import deque
from dataclasses import replace

from usbip_gadget._errors import GadgetError
from usbip_gadget.gadget._events import Ep0Event, Ep0EventType
from usbip_gadget.gadget.gadgetfs import _ep0_state as pending
from usbip_gadget.gadget.gadgetfs._ep0_actions import (
    Action,
    Answer,
    CloseEndpoints,
    CollectOutData,
    Deliver,
    Done,
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
    failure,
    unexpected,
)
from usbip_gadget.gadget.gadgetfs._ep0_events import (
    EVENT_SIZE,
    EVENTS_READ,
    GadgetFsEvent,
    GadgetFsEventType,
    parse_events,
)
from usbip_gadget.gadget.gadgetfs._ep0_state import Ep0State, Next, Purpose
from usbip_gadget.usb import Configuration, Request, RequestType, SetupPacket

#: Events read ahead during a prefetch and kept for the bridge, at most.
MAX_READ_AHEAD = 64
_SET_CONFIGURATION = (0, Request.SET_CONFIGURATION)
_SET_INTERFACE = (RequestType.INTERFACE, Request.SET_INTERFACE)


class GadgetFsEp0:
    """ep0 of one plugged GadgetFS gadget replaying ``config`` (see the module)."""

    def __init__(self, config: Configuration, name: str) -> None:
        self._config = config
        self._name = name  # ep0 as messages call it
        self._state = Ep0State()
        self._queue: deque[GadgetFsEvent] = deque()  # read, not translated yet
        self._job: pending.Job | None = None  # what the pending action's outcome is for
        # Whether the claim found the host enumerating already (SETUPs GadgetFS answered).
        self.host_began = False

    @property
    def state(self) -> Ep0State:
        return self._state

    # ---------------------------------------------------------------- calls

    def claim(self) -> Action:
        """Read ep0 once, without waiting, and keep what it gives."""
        return self._ask(pending.Reading(Purpose.CLAIM), ReadEp0(EVENTS_READ))

    def prefetch(self) -> Action:
        """Read ep0 ahead while the bridge forwards an OUT request (``Deliver.prefetch``), up
        to a request that needs an answer: GadgetFS keeps only the newest unread SETUP."""
        return self._read(Purpose.PREFETCH)

    def events(self) -> Action:
        """The bridge wants its next events."""
        self._job = None  # a prefetch stopped while waiting for ep0 read nothing
        then = self._state.next
        self._state = replace(self._state, next=Next.READ)
        match then:
            case Next.CLOSE:
                return self._ask(pending.Closing(None), CloseEndpoints())
            case Next.CLOSE_THEN_CONFIGURE:
                return self._ask(pending.Closing(self._state.configuration), CloseEndpoints())
            case Next.ACKNOWLEDGE:
                return self._acknowledge(answer=False)
            case Next.RESUME if self._state.settings:
                return Deliver((Ep0Event(Ep0EventType.RESUME),))
        return self._next_event()

    def reply(self, data: bytes) -> Action:
        """Send an IN request's data (at most wLength bytes)."""
        request = self._state.request
        length = request.w_length if request is not None else len(data)
        return self._ask(pending.Replying(), WriteEp0(data[:length]))

    def receive(self) -> Action:
        """An OUT request's data, read already, or the acknowledgement of one without."""
        request = self._state.request
        if request is None or request.w_length == 0:
            if request is not None and _is_set_interface(request):
                return self._switch(request)
            return self._acknowledge(answer=True)
        data = self._state.out_data
        if data is None:
            raise GadgetError(f"{self._name}: the host sent no data for {request.pack().hex()}")
        self._state = replace(self._state, out_data=None)
        return Answer(data)

    def stall(self) -> Action:
        """Stall the request the bridge answers."""
        return self._stall(None)

    def send(self, outcome: Outcome) -> Action:
        """The outcome of the last action; the next action."""
        job, self._job = self._job, None
        match job:
            case pending.Reading(purpose):
                return self._events_read(purpose, outcome)
            case pending.EarlyData(purpose=purpose):
                return self._batch_read(job.completed(outcome), purpose)
            case pending.LateData():
                return self._prefetched(job.completed(outcome))
            case pending.Collecting(setup):
                return self._collected(setup, outcome)
            case pending.Abandoning(setup):
                return self._abandoned(setup, outcome)
            case pending.Closing(configure):
                return self._closed(configure)  # closing a file cannot fail
            case pending.Configuring():
                return self._configured(job, outcome)
            case pending.Acknowledging(answer):
                return self._acknowledged(answer, outcome)
            case pending.Switching():
                return self._switched(job, outcome)
            case pending.Stalling(error):
                return self._stalled(error, outcome)
            case pending.Replying():
                return self._replied(outcome)
        raise RuntimeError(f"no action waits for an outcome ({outcome!r})")

    # ---------------------------------------------------------------- reading ep0

    def _ask(self, job: pending.Job, action: Action) -> Action:
        self._job = job
        return action

    def _read(self, purpose: Purpose) -> Action:
        return self._ask(pending.Reading(purpose), ReadEvents())

    def _events_read(self, purpose: Purpose, outcome: Outcome) -> Action:
        match outcome:
            case Failed() if purpose is Purpose.CLAIM:
                return Idle()
            case Failed(code) if code in (errno.EIDRM, errno.EL2HLT):
                # EIDRM: a SETUP was replaced by the next one. EL2HLT: that next one was an
                # IN request whose event was still queued (in a SETUP, ep0 reads are its data
                # stage, and reading an IN request's data stalls it): the host saw a stall,
                # so its event, read next, is stale.
                if code == errno.EL2HLT:
                    self._state = replace(self._state, stale=True)
                return self._read(purpose)
            case Failed():
                raise GadgetError(f"{self._name}: {outcome.reason}")
            case Read(data) if purpose is Purpose.CLAIM:
                whole = parse_events(data[: len(data) - len(data) % EVENT_SIZE])
                # GadgetFS queues CONNECT with the first SETUP after a connect.
                self.host_began = any(e.type == GadgetFsEventType.CONNECT for e in whole)
                return self._early_data(whole, purpose)
            case Read(data) if len(data) % EVENT_SIZE:
                # The data stage of an OUT request whose event is still queued (ep0 was in
                # its SETUP): the request is over for the host; skip its event.
                self._state = replace(self._state, stale=True)
                return self._read(purpose)
            case Read(data):
                return self._early_data(parse_events(data), purpose)
        raise unexpected(outcome)

    def _early_data(self, events: list[GadgetFsEvent], purpose: Purpose) -> Action:
        # GadgetFS has the controller take an OUT request's data (and finish the request) as
        # soon as the host sends it, and the host's next request makes it unreadable.
        batch = tuple(events)
        if batch and batch[-1].wants_data:
            return self._ask(pending.EarlyData(batch, purpose), ReadEp0(batch[-1].w_length))
        return self._batch_read(batch, purpose)

    def _batch_read(self, batch: tuple[GadgetFsEvent, ...], purpose: Purpose) -> Action:
        if purpose is Purpose.PREFETCH:
            if batch and batch[-1].wants_data:
                return self._ask(pending.LateData(batch), CollectOutData(batch[-1].w_length))
            return self._prefetched(batch)
        self._queue.extend(batch)
        return self._next_event() if purpose is Purpose.EVENTS else Idle()

    def _prefetched(self, batch: tuple[GadgetFsEvent, ...]) -> Action:
        self._queue.extend(batch)
        if batch and batch[-1].holds_ep0:
            return Idle()  # ep0 is in that request's SETUP until the bridge answers
        if len(self._queue) >= MAX_READ_AHEAD:
            # A host sending requests faster than the bridge answers them: the rest wait in
            # GadgetFS's own queue, which keeps a few (a newer SETUP replaces an older one).
            return Idle()
        return self._read(Purpose.PREFETCH)

    # ---------------------------------------------------------------- translating

    def _next_event(self) -> Action:
        # Events read in one batch after those given to the bridge (a reset's CONNECT and the
        # SETUP after it, say) come next time, after the bridge has handled these.
        while self._queue:
            action = self._translate(self._queue.popleft())
            if action is not None:
                return action
        return self._read(Purpose.EVENTS)

    def _translate(self, event: GadgetFsEvent) -> Action | None:
        state = replace(self._state, out_data=None)
        if event.type in (GadgetFsEventType.CONNECT, GadgetFsEventType.DISCONNECT):
            state = replace(state, stale=False)  # both purge GadgetFS's event queue
        if event.type == GadgetFsEventType.DISCONNECT:
            self._state = replace(state, request=None)
            return self._disable(Next.CLOSE)
        self._state = state
        if event.setup is None or event.lost:
            # CONNECT needs nothing; SUSPEND has no matching resume here; NOP and unknown
            # numbers are no events (see GadgetFsEvent).
            return None
        if state.stale:
            # Stalled already (see _events_read): end its SETUP again.
            self._state = replace(state, stale=False)
            return self._abandon(event.setup)
        return self._take(event, event.setup)

    def _take(self, event: GadgetFsEvent, setup: SetupPacket) -> Action:
        self._state = replace(self._state, request=setup)
        if event.wants_data:
            # GadgetFS takes OUT data as soon as the host sends it, and the host goes on to
            # its next request without waiting for user space: collect the data at once.
            return self._ask(pending.Collecting(setup), CollectOutData(setup.w_length))
        if event.data is not None:
            self._state = replace(self._state, out_data=event.data)
        return self._dispatch(setup)

    def _collected(self, setup: SetupPacket, outcome: Outcome) -> Action:
        match outcome:
            case Read(data):
                self._state = replace(self._state, out_data=data)
                return self._dispatch(setup)
            case Failed():
                return self._next_event()  # the host moved on before the data was read
        raise unexpected(outcome)

    def _dispatch(self, setup: SetupPacket) -> Action:
        if (setup.bm_request_type, setup.b_request) == _SET_CONFIGURATION:
            value = setup.w_value & 0xFF
            disabled = self._disable(Next.CLOSE_THEN_CONFIGURE, value)
            return disabled or self._configure(value, translating=True)
        request = Ep0Event(Ep0EventType.SETUP, setup)
        if _is_set_interface(setup) and self._state.settings:
            self._state = replace(self._state, next=Next.RESUME)
            return self._deliver(Ep0Event(Ep0EventType.SUSPEND), request)
        return self._deliver(request)

    def _deliver(self, *events: Ep0Event) -> Deliver:
        # Once an OUT request's data is read and no event read waits, ep0 is out of any SETUP.
        prefetch = self._state.out_data is not None and not self._queue
        return Deliver(events, prefetch)

    def _abandon(self, setup: SetupPacket) -> Action:
        """End the SETUP state of a request the host has seen fail already."""
        if setup.is_in or setup.w_length:
            call: Action = ReadEp0(1 if setup.is_in else setup.w_length)
        else:
            call = WriteEp0(b"")
        return self._ask(pending.Abandoning(setup), call)

    def _abandoned(self, setup: SetupPacket, outcome: Outcome) -> Action:
        failed = failure(outcome)
        if failed is not None:
            # EL2HLT on an OUT request's read: a newer IN request was in its SETUP instead.
            stale = failed.code == errno.EL2HLT and not setup.is_in
            self._state = replace(self._state, stale=stale)
        return self._next_event()

    # ---------------------------------------------------------------- configuration

    def _disable(self, then: Next, configuration: int = 0) -> Deliver | None:
        if not self._state.settings:
            return None
        self._state = replace(self._state, next=then, configuration=configuration)
        return self._deliver(Ep0Event(Ep0EventType.DISABLE))

    def _closed(self, configure: int | None) -> Action:
        self._state = replace(self._state, settings={})
        if configure is not None:
            return self._configure(configure, translating=False)
        return self._next_event()

    def _configure(self, value: int, *, translating: bool) -> Action:
        if value == 0:
            return self._acknowledge(answer=False)
        zeros = tuple((number, alts[0]) for number, alts in self._config.interfaces().items())
        return self._open_next(pending.Configuring(zeros, translating))

    def _open_next(self, job: pending.Configuring) -> Action:
        if job.remaining:
            return self._ask(job, OpenSetting(job.remaining[0][1]))
        self._state = replace(self._state, next=Next.ACKNOWLEDGE)
        enable = Ep0Event(Ep0EventType.ENABLE)
        return self._deliver(enable) if job.translating else Deliver((enable,))

    def _configured(self, job: pending.Configuring, outcome: Outcome) -> Action:
        match outcome:
            case Done():
                number, setting = job.remaining[0]
                self._set(number, setting.b_alternate_setting)
                return self._open_next(replace(job, remaining=job.remaining[1:]))
            case Refused(HostGone()):
                # Reset or unplugged meanwhile: no acknowledgement; DISCONNECT comes next.
                return self._ask(pending.Closing(None), CloseEndpoints())
            case Refused(error):
                raise error
        raise unexpected(outcome)

    def _set(self, interface: int, setting: int) -> None:
        settings = {**self._state.settings, interface: setting}
        self._state = replace(self._state, settings=settings)

    def _acknowledge(self, *, answer: bool) -> Action:
        return self._ask(pending.Acknowledging(answer), ReadEp0(0))

    def _acknowledged(self, answer: bool, outcome: Outcome) -> Action:
        failed = failure(outcome)
        if failed is not None and failed.code != errno.EIDRM:  # EIDRM: the host went on
            raise GadgetError(f"{self._name}: cannot acknowledge: {failed.reason}")
        return Answer() if answer else self._next_event()

    # ---------------------------------------------------------------- answers

    def _switch(self, request: SetupPacket) -> Action:
        number, value = request.w_index & 0xFF, request.w_value & 0xFF
        alts = {a.b_alternate_setting: a for a in self._config.interfaces().get(number, ())}
        settings = self._state.settings
        if value not in alts or number not in settings:
            return self._acknowledge(answer=True)
        current = alts.get(settings[number])
        closing = tuple(ep.b_endpoint_address for ep in current.endpoints) if current else ()
        job = pending.Switching(number, alts[value], closed=False)
        return self._ask(job, CloseEndpoints(closing))

    def _switched(self, job: pending.Switching, outcome: Outcome) -> Action:
        match outcome:
            case Done() if not job.closed:
                return self._ask(replace(job, closed=True), OpenSetting(job.setting))
            case Done():
                self._set(job.interface, job.setting.b_alternate_setting)
                return self._acknowledge(answer=True)
            case Refused(error):
                return self._stall(error)  # the host sees the setting refused, not a timeout
        raise unexpected(outcome)

    def _stall(self, error: GadgetError | None) -> Action:
        request = self._state.request
        wrong_way: Action = ReadEp0(1) if request is not None and request.is_in else WriteEp0(b"")
        return self._ask(pending.Stalling(error), wrong_way)

    def _stalled(self, error: GadgetError | None, outcome: Outcome) -> Action:
        failed = failure(outcome)
        if failed is not None and failed.code != errno.EL2HLT:
            raise GadgetError(f"{self._name}: cannot stall: {failed.reason}")
        if error is not None:
            raise error
        return Answer()

    def _replied(self, outcome: Outcome) -> Action:
        failed = failure(outcome)
        if failed is not None:
            raise GadgetError(f"{self._name}: {failed.reason}")
        return Answer()


def _is_set_interface(setup: SetupPacket) -> bool:
    return (setup.bm_request_type, setup.b_request) == _SET_INTERFACE


__all__ = ["GadgetFsEp0"]
