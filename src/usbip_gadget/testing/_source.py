"""An in-memory device source for the USB/IP server, whose devices behave like real ones
behind libusb.

``FakeDevice`` is built from a ``DeviceSnapshot`` and implements the server's ``LocalDevice``;
its calls block like libusb's synchronous ones (the server calls them from worker threads)
and the device model is driven from any thread or task. Packets follow ``_packets``:

- IN: each endpoint has a stream of packets (``send_in``, ``feed``). A read is an
  ``InTransfer`` filled from it: it ends at a short packet or when full, babble (-EOVERFLOW)
  loses the packet. When the timeout expires, the read returns -ETIMEDOUT with the packets
  it took.
- OUT: each packet the device accepts is recorded (``out_packets``). ``hold_out`` makes it
  NAK after a number of packets; a write then returns -ETIMEDOUT with what was accepted.
- Halts: ``stall`` puts a stall into an IN stream (the packets before it are delivered
  first) or halts an OUT endpoint at once; the endpoint answers -EPIPE until ``clear_halt``.
- ep0: GET_DESCRIPTOR, GET_CONFIGURATION and GET_STATUS are answered from the snapshot;
  anything else goes to ``on_control`` (data, ``Reply.STALL`` or ``Reply.HOLD``: never
  answered, the call times out).
- ``unplug``: every call, waiting ones included, returns -ENODEV; the source stops listing it.
- Kernel drivers (``drivers``: interface → driver name) are detached by ``FakeSource.open``
  and reattached by ``close``.

``requests`` records the standard requests applied through the stack, ``controls`` every
control transfer that reached the device.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from usbip_gadget._errors import ExportError
from usbip_gadget.protocol import ExportedDevice, InterfaceInfo, UsbDevice
from usbip_gadget.server import EndpointInfo, Moved
from usbip_gadget.testing._packets import (
    STALL_MARK,
    STALLED,
    ControlHandler,
    EndpointQueue,
    InTransfer,
    Reply,
    Stall,
    packets_of,
)
from usbip_gadget.usb import (
    Configuration,
    DescriptorType,
    DeviceSnapshot,
    Request,
    SetupPacket,
    encode_lang_ids,
    encode_string,
)

ENODEV, ETIMEDOUT, EINVAL = -errno.ENODEV, -errno.ETIMEDOUT, -errno.EINVAL


class FakeDevice:
    """One device; see the module docstring."""

    def __init__(
        self,
        snapshot: DeviceSnapshot,
        *,
        busnum: int = 1,
        devnum: int = 2,
        drivers: Mapping[int, str] | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.busnum, self.devnum = busnum, devnum
        self.path = f"/sys/devices/platform/dummy_hcd.0/usb{busnum}/{snapshot.busid}"
        self.configuration = snapshot.configurations[0].b_configuration_value
        self.alternates: dict[int, int] = {}
        self.drivers = dict(drivers or {})
        self.on_control: ControlHandler = lambda setup, data: Reply.STALL
        self.requests: list[tuple[object, ...]] = []
        self.controls: list[tuple[SetupPacket, bytes]] = []
        self.out_packets: dict[int, list[bytes]] = {}
        self.present = True
        self.claimed = False
        self.open_error: ExportError | None = None
        self._detached: dict[int, str] = {}
        self._queues: dict[int, EndpointQueue] = {}
        self._out_credit: dict[int, int] = {}
        self._cond = threading.Condition()

    @property
    def busid(self) -> str:
        return self.snapshot.busid

    # -- the device model (any thread) ----------------------------------------------------

    def feed(self, address: int, *packets: bytes | Stall) -> None:
        """Queue packets (or ``STALL_MARK``) on IN endpoint ``address``."""
        with self._cond:
            self._queue(address).feed(*packets)
            self._cond.notify_all()

    def send_in(self, address: int, data: bytes, *, zlp: bool = False) -> None:
        """Queue ``data`` on IN endpoint ``address`` as the device would packetize it."""
        with self._cond:
            self._queue(address).send(data, zlp=zlp)
            self._cond.notify_all()

    def stall(self, address: int) -> None:
        """IN: a stall after the packets already queued. OUT: halt at once."""
        if address & 0x80:
            self.feed(address, STALL_MARK)
            return
        with self._cond:
            self._queue(address).halted = True
            self._cond.notify_all()

    def hold_out(self, address: int, packets: int | None) -> None:
        """Accept at most ``packets`` more packets on OUT ``address``, then NAK (None: no limit)."""
        with self._cond:
            if packets is None:
                self._out_credit.pop(address, None)
            else:
                self._out_credit[address] = packets
            self._cond.notify_all()

    def plugged(self) -> bool:
        return self.present

    def unplug(self) -> None:
        with self._cond:
            self.present = False
            self._cond.notify_all()

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Block until ``condition()`` holds (checked at each change); False on timeout."""
        with self._cond:
            return self._cond.wait_for(condition, timeout)

    def pending_in(self, address: int) -> int:
        """Packets (and stalls) still waiting in the device on IN ``address``."""
        with self._cond:
            return len(self._queues.get(address, ()))

    # -- what the device source reports ---------------------------------------------------

    def active(self) -> Configuration | None:
        found = [
            c for c in self.snapshot.configurations if c.b_configuration_value == self.configuration
        ]
        return found[0] if found else None

    def exported(self) -> ExportedDevice:
        """The OP_REP_DEVLIST entry: the active configuration's interfaces, alternate 0."""
        config, desc = self.active(), self.snapshot.device
        alts = [alts[0] for alts in config.interfaces().values()] if config else []
        record = UsbDevice(
            self.path, self.busid, self.busnum, self.devnum, self.snapshot.speed,
            desc.id_vendor, desc.id_product, desc.bcd_device, desc.b_device_class,
            desc.b_device_sub_class, desc.b_device_protocol, self.configuration,
            desc.b_num_configurations, len(alts),
        )  # fmt: skip
        interfaces = tuple(
            InterfaceInfo(a.b_interface_class, a.b_interface_sub_class, a.b_interface_protocol)
            for a in alts
        )
        return ExportedDevice(record, interfaces)

    # -- LocalDevice ----------------------------------------------------------------------

    def endpoints(self) -> Mapping[int, EndpointInfo]:
        config = self.active()
        if config is None:
            return {}
        found = {}
        for number, alts in config.interfaces().items():
            chosen = self.alternates.get(number, 0)
            for alt in alts:
                if alt.b_alternate_setting != chosen:
                    continue
                for ep in alt.endpoints:
                    found[ep.b_endpoint_address] = EndpointInfo(
                        ep.b_endpoint_address, ep.transfer_type, ep.max_packet_size,
                        ep.b_interval, number,
                    )  # fmt: skip
        return found

    def read(self, address: int, length: int, timeout: float) -> Moved:
        deadline = time.monotonic() + timeout
        transfer = InTransfer(length, self._max_packet(address))
        with self._cond:
            while True:
                status = self._take_in(address, transfer)
                if status is not None:
                    return Moved.received(bytes(transfer.data), status)
                if not self._wait(deadline):
                    return Moved.received(bytes(transfer.data), ETIMEDOUT)

    def _take_in(self, address: int, transfer: InTransfer) -> int | None:
        """Fill ``transfer`` from what is queued; the status once the read is over."""
        if not self.present:
            return ENODEV
        queue = self._queue(address)
        waiting = len(queue)
        status = queue.fill(transfer)
        if len(queue) != waiting:
            self._cond.notify_all()  # for wait_for
        return status

    def write(self, address: int, data: bytes, timeout: float) -> Moved:
        deadline = time.monotonic() + timeout
        packets = packets_of(data, self._max_packet(address))
        sent = 0
        with self._cond:
            while True:
                if not self.present or self._queue(address).halted:
                    status = ENODEV if not self.present else STALLED
                    return Moved(status, length=sum(len(p) for p in packets[:sent]))
                sent += self._accept(address, packets[sent:])
                if sent == len(packets):
                    return Moved(0, length=len(data))
                if not self._wait(deadline):
                    return Moved(ETIMEDOUT, length=sum(len(p) for p in packets[:sent]))

    def _accept(self, address: int, packets: Sequence[bytes]) -> int:
        credit = self._out_credit.get(address, len(packets))
        taken = min(credit, len(packets))
        self.out_packets.setdefault(address, []).extend(packets[:taken])
        if taken:
            self._cond.notify_all()  # for wait_for
        if address in self._out_credit:
            self._out_credit[address] = credit - taken
        return taken

    def control(self, setup: SetupPacket, data: bytes, timeout: float) -> Moved:
        with self._cond:
            if not self.present:
                return Moved(ENODEV)
            self.controls.append((setup, data))
            answer = self._standard(setup)
            if answer is None:
                answer = self.on_control(setup, data)
            if answer is Reply.HOLD:
                deadline = time.monotonic() + timeout
                while self.present and self._wait(deadline):
                    pass
                return Moved(ENODEV if not self.present else ETIMEDOUT)
        if answer is Reply.STALL:
            return Moved(STALLED)
        if setup.is_in:
            return Moved.received(answer[: setup.w_length])
        return Moved(0, length=len(data))

    def _standard(self, setup: SetupPacket) -> bytes | Reply | None:
        if setup.bm_request_type != 0x80:
            return None
        if setup.b_request == Request.GET_CONFIGURATION:
            return bytes([self.configuration])
        if setup.b_request == Request.GET_STATUS:
            return bytes(2)
        if setup.b_request != Request.GET_DESCRIPTOR:
            return None
        found = self._descriptor(setup.w_value >> 8, setup.w_value & 0xFF, setup.w_index)
        return Reply.STALL if found is None else found

    def _descriptor(self, kind: int, index: int, lang_id: int) -> bytes | None:
        snap = self.snapshot
        if kind == DescriptorType.DEVICE:
            return snap.device_raw
        if kind == DescriptorType.CONFIGURATION:
            raws = snap.configurations_raw
            return raws[index] if index < len(raws) else None
        if kind == DescriptorType.STRING:
            if index == 0:
                return encode_lang_ids(list(snap.lang_ids)) if snap.lang_ids else None
            text = snap.strings.get(lang_id, {}).get(index)
            return None if text is None else encode_string(text)
        return None

    def set_configuration(self, value: int) -> int:
        values = {c.b_configuration_value for c in self.snapshot.configurations} | {0}

        def apply() -> None:
            self.configuration, self.alternates = value, {}
            self._clear_halts()

        return self._request(("set_configuration", value), value in values, apply)

    def set_interface(self, interface: int, alternate: int) -> int:
        config = self.active()
        alts = config.interfaces().get(interface, ()) if config else ()
        ok = any(alt.b_alternate_setting == alternate for alt in alts)

        def apply() -> None:
            self.alternates[interface] = alternate

        return self._request(("set_interface", interface, alternate), ok, apply)

    def clear_halt(self, address: int) -> int:
        def apply() -> None:
            self._queue(address).halted = False

        return self._request(("clear_halt", address), True, apply)

    def reset(self) -> int:
        return self._request(("reset",), True, self._clear_halts)

    def _request(self, record: tuple[object, ...], ok: bool, apply: Callable[[], None]) -> int:
        with self._cond:
            if not self.present:
                return ENODEV
            if not ok:
                return EINVAL
            self.requests.append(record)
            apply()
            self._cond.notify_all()
            return 0

    def claim(self) -> FakeDevice:
        """What ``FakeSource.open`` does: detach the kernel drivers, mark the device claimed."""
        with self._cond:
            if self.open_error is not None:
                raise self.open_error
            self._detached, self.drivers = self.drivers, {}
            self.claimed = True
            return self

    def close(self) -> None:
        with self._cond:
            self.drivers.update(self._detached)
            self._detached = {}
            self.claimed = False

    # -- internals ------------------------------------------------------------------------

    def _queue(self, address: int) -> EndpointQueue:
        queue = self._queues.get(address)
        if queue is None:
            queue = self._queues[address] = EndpointQueue(self._max_packet(address))
        return queue

    def _clear_halts(self) -> None:
        for queue in self._queues.values():
            queue.halted = False

    def _max_packet(self, address: int) -> int:
        for config in self.snapshot.configurations:
            for ep in config.endpoints():
                if ep.b_endpoint_address == address:
                    return max(1, ep.max_packet_size)
        return 64

    def _wait(self, deadline: float) -> bool:
        """Wait (lock held) for a change until ``deadline``; False once it has passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self._cond.wait(left)
        return True


class FakeSource:
    """A device source holding ``FakeDevice`` objects; unplugged ones are not listed."""

    def __init__(self, devices: Sequence[FakeDevice]) -> None:
        self.devices_held = list(devices)

    def devices(self) -> list[ExportedDevice]:
        return [d.exported() for d in self.devices_held if d.present]

    def open(self, busid: str) -> FakeDevice:
        for device in self.devices_held:
            if device.busid == busid and device.present:
                return device.claim()
        raise ExportError(f"{busid}: no such device", gone=True)
