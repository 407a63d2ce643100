"""The long-running commands: SIGHUP stops them as SIGTERM does, and one gadget name is held
by one process at a time."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

from usbip_gadget import GadgetError
from usbip_gadget.cli import main
from usbip_gadget.cli._commands import _until_signal
from usbip_gadget.gadget import LOCK_DIR_VARIABLE, gadget_lock

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_a_hangup_tears_down_like_sigterm(
    signum: signal.Signals, capsys: pytest.CaptureFixture[str]
) -> None:
    # What attach, listen and connect run under: the job is cancelled, so its teardown (the
    # unplug, in attach) runs, and the command returns normally (exit 0).
    torn_down: list[bool] = []

    async def job() -> None:
        try:
            signal.raise_signal(signum)
            await trio.sleep_forever()
        finally:
            torn_down.append(True)

    trio.run(_until_signal, job, "unplugging")
    assert torn_down == [True]
    assert capsys.readouterr().err == f"usbip-gadget: {signum.name}: unplugging\n"


def test_a_gadget_name_is_held_by_one_at_a_time(tmp_path: Path) -> None:
    directory = tmp_path / "locks"  # made as needed
    with gadget_lock("disk", directory):
        with pytest.raises(GadgetError) as info, gadget_lock("disk", directory):
            pass
        assert info.value.one_line() == (
            f"gadget disk is in use by another usbip-gadget (pid {os.getpid()})"
            " (stop it, or choose another --name)"
        )
        with gadget_lock("other", directory):  # another name is free
            pass
    with gadget_lock("disk", directory):  # released when the first ended
        pass


@pytest.mark.parametrize(
    "argv",
    [
        ["attach", "127.0.0.1:1", "1-1", "--name", "disk"],
        ["listen", "--port", "1", "--name", "disk"],
    ],
)
def test_a_second_command_with_the_same_name_is_refused_in_one_line(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(LOCK_DIR_VARIABLE, str(tmp_path))
    with gadget_lock("disk"):  # as a first attach holds it while it runs
        assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"usbip-gadget: gadget disk is in use by another usbip-gadget (pid {os.getpid()})"
        " (stop it, or choose another --name)\n"
    )


def test_a_lock_directory_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    wrong = r"^cannot lock gadget disk: .*/file/disk.lock: "
    with pytest.raises(GadgetError, match=wrong), gadget_lock("disk", blocker):
        pass
