"""Drive a pair of sans-I/O connections against each other."""

from __future__ import annotations

from usbip_gadget.protocol import (
    CLOSED,
    NEED_DATA,
    Connection,
    Event,
    ImportReply,
    ImportRequest,
    Message,
    Role,
    UsbDevice,
)

SAMPLE_DEVICE = UsbDevice(
    "/sys/devices/platform/dummy_hcd.0/usb1/1-1", "1-1", 1, 2, 3,
    0x1D6B, 0x0104, 0x0100, 0, 0, 0, 1, 1, 1,
)  # fmt: skip


def feed(conn: Connection, data: bytes, *, trickle: bool) -> list[Event]:
    """Feed ``data`` whole or one byte at a time; return every event that came out."""
    events: list[Event] = []
    chunks = [data[i : i + 1] for i in range(len(data))] if trickle else [data]
    for chunk in chunks:
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
            if event is CLOSED:
                break
    return events


def transfer(sender: Connection, receiver: Connection, message: Message, *, trickle: bool) -> Event:
    """Send ``message`` from one side and return the single event the other side parsed."""
    events = feed(receiver, sender.send(message), trickle=trickle)
    assert len(events) == 1, events
    return events[0]


def imported_pair() -> tuple[Connection, Connection]:
    """A host and a device connection already in the URB phase."""
    host, device = Connection(Role.HOST), Connection(Role.DEVICE)
    transfer(host, device, ImportRequest("1-1"), trickle=False)
    transfer(device, host, ImportReply(0, SAMPLE_DEVICE), trickle=False)
    return host, device
