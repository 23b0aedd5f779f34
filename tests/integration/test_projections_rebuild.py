"""Rebuilding a projection while commands keep arriving: nothing missing after the switch."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import pytest

from projections.errors import RebuildError
from projections.queries import ReadModels, SessionFilters
from projections.rebuild import RebuildProgress, _prepare, _switch, rebuild
from tests.support.projections import T0, projection_env


@pytest.fixture
async def env(nats_url, database_url, stream_names):
    async with projection_env(nats_url, database_url, stream_names) as environment:
        yield environment


@contextlib.asynccontextmanager
async def steady_load(env, *, sessions_per_round: int = 10):
    """Keep appending sessions (in rounds) until the block exits."""
    stop = asyncio.Event()
    rounds = 0

    async def run() -> None:
        nonlocal rounds
        while not stop.is_set():
            rounds += 1
            await env.load(sessions_per_round, seed=1000 + rounds, concurrency=8)

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        stop.set()
        await task
    assert rounds >= 2, "the load did not overlap the rebuild"


@contextlib.asynccontextmanager
async def steady_reads(env, session_id: str):
    """Keep querying every read model until the block exits; fail on any error."""
    stop = asyncio.Event()
    reads = ReadModels(env.pool, partitions=env.layout.partitions)
    answered = 0

    async def run() -> None:
        nonlocal answered
        while not stop.is_set():
            await reads.session(session_id)
            await reads.sessions(SessionFilters(), limit=20)
            await reads.events(session_id)
            await reads.routing(session_id)
            await reads.provider_stats(T0.date(), T0.date() + timedelta(days=5))
            answered += 1

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        stop.set()
        await task
    assert answered >= 2, "the reads did not overlap the rebuild"


@pytest.mark.parametrize("name", ["sessions", "daily_totals", "timeline", "routing"])
async def test_rebuild_under_load_switches_with_nothing_missing(env, name):
    await env.load(150, seed=5)
    sid = await _a_routed_session(env)
    seen: list[RebuildProgress] = []
    async with env.projector():
        await env.wait_caught_up()
        async with steady_load(env), steady_reads(env, sid):
            result = await rebuild(
                name,
                nc=env.nc,
                pool=env.pool,
                dsn=env.dsn,
                source=env.source,
                batch_size=50,
                progress=seen.append,
                poll=0.05,
            )
            await env.load(10, seed=99)  # after the switch, still under the live projector
        await env.wait_caught_up()
    expected, actual = await env.expected(), await env.actual()
    assert actual.sessions == expected.sessions
    assert actual.timeline == expected.timeline
    assert actual.totals == expected.totals
    assert actual.routing == expected.routing
    assert (result.old_version, result.new_version) == (1, 2)
    assert seen[-1].phase == "done"
    assert {p.phase for p in seen} >= {"filling", "switching", "done"}
    async with env.pool.acquire() as conn:
        active = await conn.fetchval(
            "SELECT active_version FROM projection_versions WHERE projection = $1", name
        )
        old_tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE $1", f"rm_{name}%_v1"
        )
        old_checkpoints = await conn.fetchval(
            "SELECT count(*) FROM projection_checkpoints WHERE projection = $1 AND version = 1",
            name,
        )
    assert (active, old_tables, old_checkpoints) == (2, 0, 0)


async def _a_routed_session(env) -> str:
    messages = await env.stream()
    return next(m.event.session_id for m in messages if m.event.event.type == "routed")


async def test_rebuild_twice_and_of_an_unknown_projection(env):
    await env.load(20, seed=3)
    async with env.projector():
        first = await rebuild("sessions", nc=env.nc, pool=env.pool, dsn=env.dsn, source=env.source)
        second = await rebuild("sessions", nc=env.nc, pool=env.pool, dsn=env.dsn, source=env.source)
        await env.wait_caught_up()
    assert (first.new_version, second.new_version) == (2, 3)
    assert (await env.actual()).sessions == (await env.expected()).sessions
    with pytest.raises(RebuildError, match="no projection"):
        await rebuild("nope", nc=env.nc, pool=env.pool, dsn=env.dsn, source=env.source)


async def test_the_switch_applies_what_the_serving_version_applied_since_the_fill(env):
    await env.load(40, seed=8)
    async with env.projector():
        await env.wait_caught_up()
    total = len(await env.stream())
    async with env.pool.acquire() as conn:
        old, new = await _prepare(conn, "sessions", env.layout.partitions)
        gap = await _switch(conn, env.nc, env.source, "sessions", old, new)
        await conn.execute("SELECT projection_drop_tables('sessions', $1)", old)
    assert gap == total
    assert (await env.actual()).sessions == (await env.expected()).sessions
