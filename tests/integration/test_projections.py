"""The projector against real NATS and Postgres: exactly-once effect, order, parking."""

from __future__ import annotations

import asyncpg
import pytest

from events.codec import Headers
from events.subjects import event_subject, partition_of
from projections.migrate import migrate
from projections.status import status_report
from tests.support.builders import encode_headers, requested, routed
from tests.support.projections import projection_env


@pytest.fixture
async def env(nats_url, database_url, stream_names):
    async with projection_env(nats_url, database_url, stream_names) as environment:
        yield environment


async def test_migrate_is_idempotent(database_url):
    await migrate(database_url)
    assert await migrate(database_url) == []


@pytest.mark.parametrize("appliers", [1, 3])
async def test_catch_up_from_empty_equals_the_fold_of_the_stream(env, appliers):
    await env.load(300)
    async with env.projector(appliers=appliers, batch_size=97):
        await env.wait_caught_up()
    expected, actual = await env.expected(), await env.actual()
    assert actual.sessions == expected.sessions
    assert actual.timeline == expected.timeline
    assert actual.totals == expected.totals
    assert actual.routing == expected.routing


def _session_in(partition: int, partitions: int, prefix: str) -> str:
    return next(
        sid for n in range(10_000) if partition_of(sid := f"{prefix}{n}", partitions) == partition
    )


async def _publish_raw(env, sid: str, event_type: str, payload: bytes, headers: dict) -> int:
    layout = env.layout
    subject = event_subject(layout.events_prefix, sid, event_type, layout.partitions)
    ack = await env.nc.jetstream().publish(subject, payload, headers=headers)
    return ack.seq


@pytest.mark.parked_expected
async def test_poison_events_are_parked_and_later_events_still_project(env):
    partition = 3
    poison_sid = _session_in(partition, env.layout.partitions, "poison_")
    good_sid = _session_in(partition, env.layout.partitions, "good_")
    nul_sid = _session_in(partition, env.layout.partitions, "nul_")
    good_headers = encode_headers(requested(poison_sid))
    bad_json = await _publish_raw(env, poison_sid, "requested", b"{not json", good_headers)
    unknown = await _publish_raw(
        env,
        poison_sid,
        "teleported",
        b"{}",
        {**good_headers, Headers.EVENT_TYPE: "teleported", Headers.MSG_ID: "poison-2"},
    )
    orphan = await env.append(poison_sid + "x", [routed(poison_sid + "x")], 0)
    nul = await env.append(nul_sid, [requested(nul_sid, metadata={"k": "a\x00b"})], 0)
    good = await env.load_one(good_sid)

    async with env.projector():
        await env.wait_caught_up()
        async with env.pool.acquire() as conn:
            report = await status_report(conn, env.nc, env.source)

    parked = {(p.projection, p.sequence): p for p in report.parked}
    names = ("sessions", "timeline", "daily_totals", "routing")
    assert {(name, bad_json) for name in names} <= parked.keys()
    assert {(name, unknown) for name in names} <= parked.keys()
    assert "Invalid JSON" in parked[("sessions", bad_json)].error
    assert "teleported" in parked[("timeline", unknown)].error
    assert {("sessions", orphan), ("daily_totals", orphan)} <= parked.keys()
    assert ("timeline", orphan) not in parked
    assert {("sessions", nul), ("timeline", nul)} <= parked.keys()
    assert ("daily_totals", nul) not in parked
    assert report.lag == 0
    actual = await env.actual()
    assert actual.sessions[good_sid][-1] == good
    assert good_sid in actual.sessions
    assert nul_sid not in actual.sessions


async def test_004_indexes_sessions_by_provider_reference_now_and_after_a_rebuild(database_url):
    await migrate(database_url, until="003_daily_totals_by_partition")
    applied = await migrate(database_url, until="004_sessions_by_provider_reference")
    assert applied == ["004_sessions_by_provider_reference"]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT projection_create_tables('sessions', 2)")
        indexes = await conn.fetch(
            "SELECT tablename FROM pg_indexes WHERE indexname LIKE 'rm_sessions_v%_provider_ref'"
            " ORDER BY 1"
        )
    finally:
        await conn.close()
    assert [r["tablename"] for r in indexes] == ["rm_sessions_v1", "rm_sessions_v2"]


async def test_003_keys_existing_daily_totals_by_partition_in_place(database_url):
    await migrate(database_url, until="002_read_models")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO rm_daily_totals_v1 VALUES ('2026-11-01', 'stripe', 'EUR', 'open', 3, 300)"
        )
        applied = await migrate(database_url, until="003_daily_totals_by_partition")
        assert applied == ["003_daily_totals_by_partition"]
        await conn.execute(
            "INSERT INTO rm_daily_totals_v1 (day, provider, currency, status, partition, "
            "sessions, amount) VALUES ('2026-11-01', 'stripe', 'EUR', 'open', 5, -1, -100)"
        )
        row = await conn.fetchrow("SELECT sessions, amount FROM provider_daily_totals")
        partitions = await conn.fetch("SELECT partition FROM rm_daily_totals_v1 ORDER BY 1")
    finally:
        await conn.close()
    assert tuple(row) == (2, 200)
    assert [r["partition"] for r in partitions] == [-1, 5]
