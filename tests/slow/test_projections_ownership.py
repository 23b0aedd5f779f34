"""Two projector processes share the partitions; when one dies the other takes them all."""

from __future__ import annotations

import signal

import pytest

from tests.support.projections import projection_env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

PARTITIONS = 16


@pytest.fixture
async def env(nats_url, database_url, stream_names):
    async with projection_env(nats_url, database_url, stream_names) as environment:
        yield environment


async def _all_owned_by_one(env) -> bool:
    owners = await env.owners()
    holders = {o[0] for o in owners.values() if len(o) == 1}
    return (
        set(owners) == set(range(PARTITIONS))
        and all(len(o) == 1 for o in owners.values())
        and len(holders) == 1
    )


async def test_each_partition_has_one_owner_and_a_survivor_takes_over(env, tmp_path):
    await env.load(100, seed=21)
    first = env.projector_process(tmp_path / "first.log")
    second = env.projector_process(tmp_path / "second.log")
    try:
        await wait_until(
            lambda: _balanced(env), timeout=60, what="two workers owning 8 partitions each"
        )
        await env.wait_caught_up()
        second.send_signal(signal.SIGKILL)
        second.wait(timeout=10)
        await wait_until(lambda: _all_owned_by_one(env), timeout=15, what="the survivor to own all")
        await env.load(100, seed=22)
        await env.wait_caught_up()
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=20)
    expected, actual = await env.expected(), await env.actual()
    assert actual.sessions == expected.sessions
    assert actual.timeline == expected.timeline
    assert actual.totals == expected.totals


async def _balanced(env) -> bool:
    owners = await env.owners()
    if set(owners) != set(range(PARTITIONS)) or any(len(o) != 1 for o in owners.values()):
        return False
    holders = [o[0] for o in owners.values()]
    return len(set(holders)) == 2 and all(holders.count(p) == 8 for p in set(holders))
