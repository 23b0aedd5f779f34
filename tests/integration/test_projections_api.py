"""The query surface: HTTP routes and the Python client over real read models."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import timedelta

import httpx
import pytest

from events.subjects import partition_of
from projections.api import MIN_SEQUENCE_HEADER, create_app
from projections.client import QueryClient
from projections.errors import ConsistencyTimeout, InvalidQuery, SessionNotFound
from projections.fold import fold
from projections.queries import ReadModels
from projections.schemas import CheckoutSession
from projections.watch import CommitWatch
from tests.support.builders import routed
from tests.support.projections import T0, projection_env


@pytest.fixture
async def env(nats_url, database_url, stream_names):
    async with projection_env(nats_url, database_url, stream_names) as environment:
        yield environment


@pytest.fixture
async def loaded(env):
    """120 sessions, projected."""
    await env.load(120, seed=11)
    async with env.projector():
        await env.wait_caught_up()
    return env


def _client(env, *, wait_timeout: float = 5.0) -> QueryClient:
    reads = ReadModels(env.pool, partitions=env.layout.partitions, wait_timeout=wait_timeout)
    transport = httpx.ASGITransport(app=create_app(reads))
    return QueryClient("http://reads.test", transport=transport)


def _folded(messages):
    by_session = defaultdict(list)
    for message in sorted(messages, key=lambda m: m.sequence):
        by_session[message.event.session_id].append(message.event)
    return by_session


async def test_a_session_is_the_fold_of_its_events(loaded):
    by_session = _folded(await loaded.stream())
    async with _client(loaded) as reads:
        for sid in list(by_session)[:20]:
            got = await reads.session(sid)
            assert got == CheckoutSession.from_state(fold(by_session[sid]))


async def test_list_filters_and_keyset_pages_cover_each_match_once(loaded):
    by_session = _folded(await loaded.stream())
    states = [fold(events) for events in by_session.values()]
    wanted = {s.session_id for s in states if s.core.status == "complete"}
    async with _client(loaded) as reads:
        seen = [s async for s in reads.iter_sessions(status="complete", limit=7)]
        everything = [s async for s in reads.iter_sessions(limit=500)]
        eur = await reads.sessions(currency="eur", limit=500)
        email = states[0].customer["email"]
        by_email = await reads.sessions(customer_email=email, limit=500)
        window = await reads.sessions(
            created_from=T0 + timedelta(hours=24), created_to=T0 + timedelta(hours=48), limit=500
        )
    assert [s.id for s in seen] == sorted(
        wanted,
        key=lambda sid: (next(x for x in states if x.session_id == sid).core.created_at, sid),
        reverse=True,
    )
    assert len({s.id for s in everything}) == len(everything) == len(states)
    assert {s.id for s in eur.data} == {s.session_id for s in states if s.core.currency == "EUR"}
    assert {s.id for s in by_email.data} == {
        s.session_id for s in states if s.customer.get("email") == email
    }
    assert all(
        T0 + timedelta(hours=24) <= s.created_at < T0 + timedelta(hours=48) for s in window.data
    )


async def test_timeline_and_routing_decisions(loaded):
    by_session = _folded(await loaded.stream())
    sid, events = next(iter(by_session.items()))
    async with _client(loaded) as reads:
        timeline = await reads.events(sid)
        decisions = await reads.routing_decisions(sid)
    assert [(e.sequence, e.type) for e in timeline] == [(e.sequence, e.event.type) for e in events]
    assert all(e.trace_id and e.traceparent and e.trace_id in e.traceparent for e in timeline)
    assert decisions[0].kind == "routed"
    assert decisions[0].provider == events[1].event.provider.value


async def test_as_of_folds_the_events_up_to_the_instant(loaded):
    by_session = _folded(await loaded.stream())
    sid, events = next((k, v) for k, v in by_session.items() if len(v) >= 3)
    async with _client(loaded) as reads:
        timeline = await reads.events(sid)
        second = timeline[1].occurred_at
        then = await reads.session(sid, as_of=second)
        with pytest.raises(SessionNotFound):
            await reads.session(sid, as_of=timeline[0].occurred_at - timedelta(seconds=1))
    prefix = [e for e, t in zip(events, timeline, strict=True) if t.occurred_at <= second]
    assert then == CheckoutSession.from_state(fold(prefix))


async def test_min_sequence_waits_for_the_write_then_answers(env):
    sid = "rw_session_1"
    async with env.projector(), _client(env) as reads:
        created = await env.load_one(sid)
        assert (await reads.session(sid, min_sequence=created)).last_sequence == created
        timeline = await reads.events(sid, min_sequence=created)
        assert timeline[-1].sequence == created


async def test_min_sequence_not_reached_is_a_consistency_timeout(env):
    sid = "rw_session_2"
    sequence = await env.load_one(sid)
    async with _client(env, wait_timeout=0.3) as reads:
        with pytest.raises(ConsistencyTimeout) as caught:
            await reads.session(sid, min_sequence=sequence)
    assert caught.value.details["min_sequence"] == sequence


async def test_min_sequence_header_is_honoured(loaded):
    sid = next(iter(_folded(await loaded.stream())))
    reads = ReadModels(loaded.pool, partitions=loaded.layout.partitions, wait_timeout=0.2)
    transport = httpx.ASGITransport(app=create_app(reads))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        late = await http.get(
            f"/v1/checkout-sessions/{sid}", headers={MIN_SEQUENCE_HEADER: "999999"}
        )
        ok = await http.get(f"/v1/checkout-sessions/{sid}", headers={MIN_SEQUENCE_HEADER: "1"})
    assert late.status_code == 504
    assert late.json()["code"] == "consistency_timeout"
    assert ok.status_code == 200


async def test_errors_are_typed_json(loaded):
    async with _client(loaded) as reads:
        with pytest.raises(SessionNotFound):
            await reads.session("cs_nobody")
        with pytest.raises(SessionNotFound):
            await reads.session("not a valid id!")
        with pytest.raises(SessionNotFound):
            await reads.routing_decisions("cs_nobody")
        with pytest.raises(SessionNotFound):
            await reads.events("cs_nobody")
        with pytest.raises(InvalidQuery):
            await reads.sessions(status="paid")
        with pytest.raises(InvalidQuery):
            await reads.sessions(cursor="%%%garbage")
        with pytest.raises(InvalidQuery):
            await reads.provider_stats(T0.date(), T0.date() - timedelta(days=1))
    transport = httpx.ASGITransport(
        app=create_app(ReadModels(loaded.pool, partitions=loaded.layout.partitions))
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        missing = await http.get("/v1/checkout-sessions/cs_nobody")
        bad = await http.get("/v1/checkout-sessions", params={"limit": "0"})
        schema = await http.get("/openapi.json")
    assert missing.status_code == 404
    assert missing.json() == {
        "code": "session_not_found",
        "message": "no checkout session cs_nobody",
        "session_id": "cs_nobody",
    }
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_query"
    assert "/v1/checkout-sessions/{session_id}" in schema.json()["paths"]


async def test_provider_stats_match_the_fold(loaded):
    expected = await loaded.expected()
    async with _client(loaded) as reads:
        stats = await reads.provider_stats(T0.date(), T0.date() + timedelta(days=10))
        daily = await reads.provider_stats(T0.date(), T0.date() + timedelta(days=10), by_day=True)
    summed = defaultdict(lambda: [0, 0])
    for (_, provider, currency, status), (n, amount) in expected.totals.items():
        summed[(provider or None, currency, status)][0] += n
        summed[(provider or None, currency, status)][1] += amount
    assert {
        (t.provider, t.currency, t.status.value): [t.sessions, t.amount] for t in stats.data
    } == {k: v for k, v in summed.items() if v != [0, 0]}
    assert sum(t.sessions for t in daily.data) == sum(t.sessions for t in stats.data)


@pytest.mark.parked_expected
async def test_an_event_without_its_session_is_parked_not_served(env):
    orphan = "orphan_1"
    sequence = await env.append(orphan, [routed(orphan)], 0)
    async with env.projector(), _client(env) as reads:
        await env.wait_caught_up()
        with pytest.raises(SessionNotFound):
            await reads.session(orphan, min_sequence=sequence)


async def test_a_commit_notice_wakes_the_waiter_of_its_partition(env):
    sid = "rw_session_3"
    partition = partition_of(sid, env.layout.partitions)
    watch = CommitWatch(env.dsn)
    await watch.start()
    try:
        async with env.projector():
            await env.wait_caught_up()
            info = await env.nc.jetstream().stream_info(env.layout.events_stream)
            next_sequence = info.state.last_seq + 1
            started = time.monotonic()
            waiter = asyncio.create_task(watch.wait("timeline", partition, next_sequence, 20.0))
            sequence = await env.load_one(sid)
            await waiter
            waited = time.monotonic() - started
            reads = ReadModels(env.pool, partitions=env.layout.partitions, watch=watch)
            session = await reads.session(sid, min_sequence=sequence)
    finally:
        await watch.close()
    assert waited < 10.0, "woken by the commit notice, long before the timeout"
    assert session.last_sequence == sequence
