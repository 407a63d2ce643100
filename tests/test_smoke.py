import trio


async def test_trio_mode_runs() -> None:
    with trio.fail_after(1):
        await trio.sleep(0)
    assert trio.current_time() >= 0
