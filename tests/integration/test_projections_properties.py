"""Property: applying the same events again, however batched, leaves identical rows.

Each example appends a few realistic sessions through the real event store, reads them
back from the stream, and applies them in a random split of batches. Then it applies them
again twice: through the batch transaction (the checkpoint skips them) and straight
through each read model's ``apply`` with no checkpoint at all (each row remembers the last
sequence it applied). Every row of those sessions, and every total, must stay the same.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.workload import lifecycle
from projections import live_bindings
from projections.batch import apply_batch
from projections.read_models import all_projections
from tests.support.projections import T0, actual_from, projection_env

_examples = itertools.count()


@pytest.fixture
async def env(nats_url, database_url, stream_names):
    async with projection_env(nats_url, database_url, stream_names) as environment:
        yield environment


def _split(messages, cuts):
    bounds = sorted({0, len(messages), *(c % (len(messages) + 1) for c in cuts)})
    return [messages[a:b] for a, b in itertools.pairwise(bounds) if b > a]


async def _snapshot(env, sids):
    async with env.pool.acquire() as conn:
        everything = await actual_from(conn)
        members = await conn.fetch(
            "SELECT * FROM rm_daily_totals_members_v1 WHERE session_id = ANY($1) ORDER BY 1",
            list(sids),
        )
    return (
        {k: v for k, v in everything.sessions.items() if k in sids},
        {k for k in everything.timeline if k[0] in sids},
        everything.totals,
        {r for r in everything.routing if r[0] in sids},
        [tuple(m.values()) for m in members],
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 10**6),
    sessions=st.integers(1, 5),
    cuts=st.lists(st.integers(0, 40), max_size=4),
)
async def test_applying_the_same_events_twice_leaves_identical_rows(env, seed, sessions, cuts):
    rng = random.Random(seed)
    example = next(_examples)
    lifecycles = [lifecycle(rng, f"p{example}_{seed}_{n}", T0) for n in range(sessions)]
    for events in lifecycles:
        version = 0
        for event in events:
            version = await env.append(events[0].session_id, [event], version)
    sids = {events[0].session_id for events in lifecycles}
    messages = [m for m in await env.stream() if m.event and m.event.session_id in sids]
    messages.sort(key=lambda m: m.sequence)

    async with env.pool.acquire() as conn:
        for batch in _split(messages, cuts):
            await apply_batch(conn, live_bindings(), batch)
    first = await _snapshot(env, sids)
    assert len(first[1]) == len(messages)

    async with env.pool.acquire() as conn:
        outcome = await apply_batch(conn, live_bindings(), messages)
        async with conn.transaction():
            for projection in all_projections():
                await projection.apply(conn, 1, [m.event for m in messages])
    assert outcome.messages == len(messages)
    assert await _snapshot(env, sids) == first
