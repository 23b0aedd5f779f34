"""The benchmark's peer (`bench.peer`): eventsourcing writes and projects our
session workload, against a real PostgreSQL, at a tiny scale."""

from __future__ import annotations

import asyncio

import asyncpg

from bench.peer import EVENTS_PER_SESSION, project_sessions, write_sessions

SESSIONS = 50


async def test_peer_writes_then_projects_every_session(database_url: str) -> None:
    written = await asyncio.to_thread(write_sessions, database_url, SESSIONS, writers=4)
    assert written.events == SESSIONS * EVENTS_PER_SESSION == 150
    assert written.seconds > 0
    assert written.events_per_second > 0

    projected = await asyncio.to_thread(
        project_sessions, database_url, expected_events=written.events, timeout=120
    )
    assert projected.events == 150
    assert projected.seconds > 0

    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM peercheckout_events")
        by_status = await conn.fetch(
            "SELECT status, provider IS NOT NULL AS routed, count(*) AS n, "
            "count(DISTINCT currency) AS currencies, min(amount) > 0 AS priced "
            "FROM peer_checkout_sessions GROUP BY 1, 2"
        )
        positions = (
            await conn.fetchval("SELECT max(notification_id) FROM peercheckout_events"),
            await conn.fetchval("SELECT max(position) FROM peer_checkout_sessions"),
        )
        tracked = await conn.fetchval(
            "SELECT notification_id FROM peersessions_tracking "
            "WHERE application_name = 'PeerCheckout'"
        )
    finally:
        await conn.close()
    assert stored == 150
    assert [tuple(row) for row in by_status] == [("open", True, 50, 1, True)]
    assert positions[0] == positions[1] == tracked  # the last event's row and tracking agree


async def test_peer_projection_resumes_from_its_tracking_position(database_url: str) -> None:
    await asyncio.to_thread(write_sessions, database_url, 5, writers=2)
    first = await asyncio.to_thread(project_sessions, database_url, expected_events=15)
    assert first.events == 15
    await asyncio.to_thread(write_sessions, database_url, 3, writers=1)
    # a second runner starts after the tracked position: only the new events are processed
    second = await asyncio.to_thread(project_sessions, database_url, expected_events=9)
    assert second.events == 9
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetchval(
            "SELECT count(*) FROM peer_checkout_sessions WHERE status = 'open'"
        )
    finally:
        await conn.close()
    assert rows == 8
