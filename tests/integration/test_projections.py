"""The projector against real NATS and Postgres: exactly-once effect, order, parking."""

from __future__ import annotations

import pytest

from projections.migrate import migrate
from tests.projections_support import projection_env


@pytest.fixture
async def env(nats_url, database_url, stream_names):
    async with projection_env(nats_url, database_url, stream_names) as environment:
        yield environment


async def test_migrate_is_idempotent(database_url):
    await migrate(database_url)
    assert await migrate(database_url) == []


async def test_catch_up_from_empty_equals_the_fold_of_the_stream(env):
    await env.load(300)
    async with env.projector():
        await env.wait_caught_up()
    expected, actual = await env.expected(), await env.actual()
    assert actual.sessions == expected.sessions
    assert actual.timeline == expected.timeline
    assert actual.totals == expected.totals
    assert actual.routing == expected.routing
