"""The projector through a NATS server crash: readers recreate their consumers, nothing lost.

Its ephemeral, memory-stored consumers die with the server; each reader notices (silent
heartbeats or an error status) and starts a new consumer from the last sequence it
delivered + 1. The file-stored stream keeps every event.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.projections import projection_env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
async def env(nats_server, database_url, stream_names):
    async with projection_env(nats_server.url, database_url, stream_names) as environment:
        yield environment


async def test_a_killed_and_restarted_nats_server_loses_nothing(env, nats_server):
    await env.load(300, seed=31)
    async with env.projector():
        await wait_until(lambda: _some_applied(env), timeout=30, what="the first commits")
        nats_server.kill()
        await asyncio.to_thread(nats_server.start)
        await wait_until(lambda: _connected(env), timeout=30, what="the client to reconnect")
        await env.load(300, seed=32)
        await env.wait_caught_up(timeout=90)
    expected, actual = await env.expected(), await env.actual()
    assert actual.timeline == expected.timeline
    assert actual.sessions == expected.sessions
    assert actual.totals == expected.totals


async def _some_applied(env) -> bool:
    return await env.applied() > 0


async def _connected(env) -> bool:
    return env.nc.is_connected
