"""The URB table on its own: seqnums, replies matched to URBs, unlinks, forgetting."""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing

from usbip_gadget import TransferError, TransportError
from usbip_gadget.client._urb_table import UrbTable
from usbip_gadget.protocol import CmdUnlink, Message, RetSubmit

pytestmark = pytest.mark.timeout(30)

DEVID = 0x10002


def table_and_sent(*, first_seqnum: int = 1) -> tuple[UrbTable, list[Message]]:
    sent: list[Message] = []
    return UrbTable(sent.append, DEVID, unlink_timeout=1.0, first_seqnum=first_seqnum), sent


async def test_seqnums_count_up_from_one() -> None:
    table, _ = table_and_sent()
    assert [table.next_seqnum() for _ in range(3)] == [1, 2, 3]


async def test_seqnums_wrap_at_32_bits_skipping_0_and_those_in_use() -> None:
    table, _ = table_and_sent(first_seqnum=0xFFFFFFFE)
    table.add(table.next_seqnum())
    table.add(1)
    await table.send_unlink(0xFFFFFFFE)  # takes 0xFFFFFFFF for the CMD_UNLINK
    # 0xFFFFFFFE awaits its reply, 0 is never used, 1 is pending, 0xFFFFFFFF is an unlink.
    assert table.next_seqnum() == 2


async def test_a_ret_submit_settles_its_urb_once() -> None:
    table, _ = table_and_sent()
    pending = table.add(table.next_seqnum())
    assert len(table) == 1
    assert not pending.done.is_set()
    first, second = RetSubmit(1, actual_length=2, data=b"ab"), RetSubmit(1, status=-errno.EPIPE)
    table.complete(1, first)
    table.complete(1, second)  # a duplicate reply changes nothing
    assert pending.done.is_set()
    assert (pending.result, pending.error) == (first, None)
    assert len(table) == 1  # settled, still there until forgotten


async def test_replies_for_unknown_seqnums_are_dropped() -> None:
    table, _ = table_and_sent()
    pending = table.add(table.next_seqnum())
    table.complete(7, RetSubmit(7))
    table.unlinked(8, -errno.ECONNRESET)
    assert not pending.done.is_set()


async def test_unlink_then_ret_unlink_fails_the_urb_with_its_status() -> None:
    table, sent = table_and_sent()
    pending = table.add(table.next_seqnum())
    await table.send_unlink(1)
    assert sent == [CmdUnlink(2, DEVID, 1)]
    table.unlinked(2, -errno.ECONNRESET)
    assert pending.done.is_set()
    assert pending.result is None
    assert isinstance(pending.error, TransferError)
    assert pending.error.status == -errno.ECONNRESET


async def test_ret_unlink_of_status_0_alone_settles_the_urb_empty() -> None:
    # Linux stub_complete: a URB that completes while its unlink is under way is answered by
    # RET_UNLINK(status 0) alone, with no RET_SUBMIT.
    table, _ = table_and_sent()
    pending = table.add(table.next_seqnum())
    await table.send_unlink(1)
    table.unlinked(2, 0)
    assert (pending.result, pending.error) == (RetSubmit(1), None)


@pytest.mark.parametrize("unlink_status", [0, -errno.ECONNRESET])
async def test_a_ret_submit_racing_the_unlink_wins(unlink_status: int) -> None:
    table, _ = table_and_sent()
    pending = table.add(table.next_seqnum())
    await table.send_unlink(1)
    ret = RetSubmit(1, actual_length=4, data=b"data")
    table.complete(1, ret)  # sent by the server before it saw the CMD_UNLINK
    table.unlinked(2, unlink_status)
    assert (pending.result, pending.error) == (ret, None)


async def test_forget_drops_the_urb_and_its_unlinks() -> None:
    table, _ = table_and_sent()
    pending = table.add(table.next_seqnum())
    other = table.add(table.next_seqnum())
    await table.send_unlink(1)
    await table.send_unlink(1)
    table.forget(1)
    assert len(table) == 1
    table.unlinked(3, -errno.ECONNRESET)  # late replies for a forgotten URB are dropped
    table.complete(1, RetSubmit(1))
    assert not pending.done.is_set()
    table.forget(1)  # forgetting twice is harmless
    table.forget(2)
    assert len(table) == 0
    assert not other.done.is_set()


async def test_fail_settles_what_waits_and_leaves_what_is_settled() -> None:
    table, _ = table_and_sent()
    done = table.add(table.next_seqnum())
    waiting = table.add(table.next_seqnum())
    table.complete(1, RetSubmit(1))
    error = TransportError("the server closed the connection")
    table.fail(error)
    assert (done.result, done.error) == (RetSubmit(1), None)
    assert (waiting.result, waiting.error) == (None, error)


async def test_an_unlink_on_an_ended_connection_is_recorded_and_not_raised() -> None:
    def send(message: Message) -> None:
        raise TransportError("connection closed")

    table = UrbTable(send, DEVID, unlink_timeout=1.0)
    pending = table.add(table.next_seqnum())
    await table.send_unlink(1)
    table.unlinked(2, -errno.ECONNRESET)
    assert isinstance(pending.error, TransferError)


async def test_unlink_returns_once_the_server_settles_the_urb(
    autojump_clock: trio.abc.Clock,
) -> None:
    table, sent = table_and_sent()
    pending = table.add(table.next_seqnum())
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(table.unlink, 1, pending)
            await trio.testing.wait_all_tasks_blocked()
            assert sent == [CmdUnlink(2, DEVID, 1)]
            start = trio.current_time()
            table.unlinked(2, -errno.ECONNRESET)
    assert trio.current_time() == start
    assert pending.done.is_set()
    assert len(table) == 0


async def test_unlink_gives_up_after_unlink_timeout_and_forgets(
    autojump_clock: trio.abc.Clock,
) -> None:
    table, _ = table_and_sent()
    pending = table.add(table.next_seqnum())
    start = trio.current_time()
    with trio.fail_after(5):
        await table.unlink(1, pending)
    assert trio.current_time() - start == pytest.approx(1.0)
    assert not pending.done.is_set()
    assert len(table) == 0
    table.unlinked(2, 0)  # the answer after the timeout is dropped
    assert not pending.done.is_set()
