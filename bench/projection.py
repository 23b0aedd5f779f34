"""The raw baseline of a projection catch-up: nats-py `fetch(500)` from the first event,
and per batch one asyncpg transaction that writes the rows with ``unnest`` and moves the
checkpoint. It reads the same stream and writes comparable rows (a timeline row per
event, an upserted row per session): the I/O of our projector without its decoding,
validation, folds or ownership. `raw_follow` does the same live, for the lag baseline.
"""

from __future__ import annotations

import contextlib
import json
import time

import asyncpg
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from bench.append import Throughput
from events.subjects import parse_event_subject
from projections.checkpoints import COMMITS_CHANNEL
from projections.source import EventSource

__all__ = ["raw_catch_up", "raw_follow"]

_SCHEMA = """
CREATE TABLE raw_timeline (session_id text, sequence bigint PRIMARY KEY, type text,
                           payload jsonb);
CREATE TABLE raw_sessions (session_id text PRIMARY KEY, status text, last_sequence bigint);
CREATE TABLE raw_checkpoint (name text PRIMARY KEY, position bigint);
INSERT INTO raw_checkpoint VALUES ('raw', 0);
"""

_TIMELINE = """
INSERT INTO raw_timeline
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::jsonb[])
"""

_SESSIONS = """
INSERT INTO raw_sessions
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
ON CONFLICT (session_id) DO UPDATE
SET status = excluded.status, last_sequence = excluded.last_sequence
"""


async def raw_catch_up(
    nc: NatsClient, dsn: str, source: EventSource, *, events: int, batch: int = 500
) -> Throughput:
    """From empty tables to ``events`` applied, as fast as it goes."""
    connection = await asyncpg.connect(dsn)
    try:
        pull = await _start(nc, connection, source)
        done = 0
        started = time.perf_counter()
        while done < events:
            done += await _apply(connection, await pull.fetch(batch, timeout=5.0), source)
        return Throughput(done, time.perf_counter() - started)
    finally:
        await connection.close()


async def raw_follow(nc: NatsClient, dsn: str, source: EventSource, *, batch: int = 500) -> None:
    """Follow the stream until cancelled, announcing each commit the way our projector
    does (``NOTIFY projection_commits`` with the timeline's new positions), so the lag
    probe measures both the same way. A short fetch wait keeps batches small at low rates.
    """
    connection = await asyncpg.connect(dsn)
    try:
        pull = await _start(nc, connection, source)
        while True:
            with contextlib.suppress(TimeoutError):
                await _apply(connection, await pull.fetch(batch, timeout=0.01), source)
    finally:
        await connection.close()


async def _start(
    nc: NatsClient, connection: asyncpg.Connection, source: EventSource
) -> JetStreamContext.PullSubscription:
    await connection.execute(_SCHEMA)
    return await nc.jetstream().pull_subscribe(
        f"{source.prefix}.>",
        stream=source.stream,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.ALL, max_ack_pending=-1
        ),
    )


async def _apply(connection: asyncpg.Connection, messages: list[Msg], source: EventSource) -> int:
    """One transaction: timeline rows, session rows, the checkpoint and its announcement."""
    if not messages:  # a fetch can end with nothing (its wait ran out)
        return 0
    timeline: tuple[list[str], list[int], list[str], list[str]] = ([], [], [], [])
    latest: dict[str, tuple[str, int]] = {}
    positions: dict[int, int] = {}
    for msg in messages:
        payload = json.loads(msg.data)
        sequence = msg.metadata.sequence.stream
        timeline[0].append(payload["session_id"])
        timeline[1].append(sequence)
        timeline[2].append(payload["type"])
        timeline[3].append(msg.data.decode())
        latest[payload["session_id"]] = (payload["type"], sequence)
        partition = parse_event_subject(source.prefix, msg.subject)[0]
        positions[partition] = max(positions.get(partition, 0), sequence)
    notice = ";".join(f"timeline:1:{p}:{position}" for p, position in positions.items())
    async with connection.transaction():
        await connection.execute(_TIMELINE, *timeline)
        await connection.execute(
            _SESSIONS,
            list(latest),
            [status for status, _ in latest.values()],
            [sequence for _, sequence in latest.values()],
        )
        await connection.execute(
            "UPDATE raw_checkpoint SET position = $1 WHERE name = 'raw'", timeline[1][-1]
        )
        await connection.execute("SELECT pg_notify($1, $2)", COMMITS_CHANNEL, notice)
    await messages[-1].ack()
    return len(messages)
