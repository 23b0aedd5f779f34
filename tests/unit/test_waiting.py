"""`wait_until`, the one way tests wait: the first truthy answer, or a failure naming what."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.waiting import WaitTimeout, wait_until


async def test_returns_the_first_truthy_answer_of_a_plain_or_async_condition():
    answers = iter([None, 0, "", "found"])
    assert await wait_until(lambda: next(answers), 5, interval=0.001) == "found"

    calls = 0

    async def third_time() -> int | None:
        nonlocal calls
        calls += 1
        return calls if calls == 3 else None

    assert await wait_until(third_time, 5, interval=0.001) == 3


async def test_fails_after_the_timeout_naming_what_it_waited_for():
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"timed out after 0\.2 s waiting for the moon") as err:
        await wait_until(lambda: False, 0.2, what="the moon", interval=0.01)
    assert 0.2 <= time.monotonic() - started < 2
    assert isinstance(err.value, AssertionError)
    assert isinstance(err.value, TimeoutError)


async def test_ignored_errors_mean_not_yet_and_others_propagate():
    attempts = iter([ConnectionRefusedError(), ConnectionRefusedError(), "up"])

    def server() -> str:
        answer = next(attempts)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await wait_until(server, 5, interval=0.001, ignoring=(OSError,)) == "up"
    with pytest.raises(ZeroDivisionError):
        await wait_until(lambda: 1 / 0, 5, ignoring=(OSError,))


async def test_a_condition_still_running_at_the_deadline_is_cancelled():
    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True

    started = time.monotonic()
    with pytest.raises(WaitTimeout):
        await wait_until(hangs, 0.2)
    assert time.monotonic() - started < 2
