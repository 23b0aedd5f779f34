"""Projector processes killed with SIGKILL at random moments under load: nothing lost or doubled.

Each projector is a real `checkout-orchestrator projections run` process. A kill lands
while batches are in flight (between reading, applying and committing); the next
process resumes from the checkpoints. At the end every read model must equal the fold of
every event in the stream.
"""

from __future__ import annotations

import asyncio
import random
import signal

import pytest

from bench.workload import drive
from projections.status import caught_up
from tests.support.projections import projection_env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

EVENTS = 20_000


@pytest.fixture
async def env(nats_url, database_url, stream_names):
    async with projection_env(nats_url, database_url, stream_names) as environment:
        yield environment


def _lifecycles(env, events: int):
    found, total, seed = [], 0, 100
    while total < events:
        batch = env.lifecycles(200, seed=seed)
        found += batch
        total += sum(len(lifecycle) for lifecycle in batch)
        seed += 1
    return found, total


def _kill(process) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


async def test_sigkill_at_random_moments_loses_and_doubles_nothing(env, tmp_path):
    rng = random.Random(20_000)
    lifecycles, total = _lifecycles(env, EVENTS)
    load = asyncio.create_task(drive(env.append, lifecycles, concurrency=48))
    log = tmp_path / "projector.log"
    kills = 0
    while kills < 8 or not load.done():
        process = env.projector_process(log)
        try:
            start = await env.applied()
            step = rng.randint(200, 2500)
            await wait_until(
                lambda start=start, step=step: _grew(env, start, step, load),
                timeout=60,
                what="the projector to commit more events",
            )
        finally:
            _kill(process)
        kills += 1
    await load
    process = env.projector_process(log)
    try:
        await env.wait_caught_up(timeout=120)
    finally:
        process.terminate()
        process.wait(timeout=20)
    expected, actual = await env.expected(), await env.actual()
    assert len(expected.timeline) == total >= EVENTS
    assert actual.timeline == expected.timeline
    assert actual.sessions == expected.sessions
    assert actual.totals == expected.totals
    assert actual.routing == expected.routing
    assert kills >= 8


async def _grew(env, start: int, step: int, load: asyncio.Task) -> bool:
    now = await env.applied()
    if now >= start + step:
        return True
    # once the load is over and everything is applied, "more" cannot come: kill anyway
    return load.done() and now >= start and await _all_applied(env)


async def _all_applied(env) -> bool:
    async with env.pool.acquire() as conn:
        return await caught_up(conn, env.nc, env.source)
