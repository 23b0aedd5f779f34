"""The projector through a PostgreSQL crash: batches retried, ownership retaken, nothing doubled.

A private cluster is SIGKILLed (postmaster and backends, as a machine crash) while the
projector commits, then started again. Uncommitted batches are lost with the crash and
retried from the stream; committed ones stay, and their checkpoints make the retry skip
them. At the end the read models equal the fold of the stream.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.support.projections import projection_env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


async def test_a_postgres_crash_loses_and_doubles_nothing(nats_url, stream_names, private_postgres):
    dsn = private_postgres.create_database("projections")
    async with projection_env(nats_url, dsn, stream_names) as env:
        await env.load(400, seed=41)
        async with env.projector():
            await wait_until(lambda: _some_applied(env), timeout=30, what="the first commits")
            private_postgres.kill()
            await asyncio.to_thread(private_postgres.start)
            await env.load(200, seed=42)
            await wait_until(lambda: _caught_up(env), timeout=90, what="the catch-up after restart")
        expected, actual = await env.expected(), await env.actual()
    assert actual.timeline == expected.timeline
    assert actual.sessions == expected.sessions
    assert actual.totals == expected.totals
    assert actual.routing == expected.routing


async def _some_applied(env) -> bool:
    return await env.applied() > 0


async def _caught_up(env) -> bool:
    try:
        await env.wait_caught_up(timeout=1)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False  # not yet, or a pooled connection that died with the server
    return True
