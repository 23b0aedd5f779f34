"""The projection tests' world: real NATS, real Postgres, the real event store.

`projection_env` yields a `ProjectionEnv`: a unique stream (from the `stream_names`
fixture), a fresh migrated database, the event store appending to it, and helpers to
load realistic sessions, run projectors (in-process or as `checkout-orchestrator
projections run` processes), and compute what the read models must hold by folding every
event in the stream (`expected_from`) to compare with what they hold (`actual_from`).
``T0`` is the day the loaded sessions start on (the workload's clock), not
`tests.support.builders.T0`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import nats
from nats.aio.client import Client as NatsClient
from ulid import ULID

from bench.workload import drive, lifecycle, session_ids
from events.catalog import CheckoutEvent
from orchestrator.jetstream.event_store import EventStore
from orchestrator.jetstream.streams import StreamLayout, ensure_streams
from projections.checkpoints import Binding
from projections.fold import SessionState, apply
from projections.migrate import migrate
from projections.ownership import owners
from projections.projector import Projector, ProjectorSettings
from projections.read_models import all_projections
from projections.read_models import routing as routing_model
from projections.read_models import sessions as sessions_model
from projections.read_models.daily_totals import totals_of
from projections.source import EventSource, StreamMessage, read_all
from projections.status import wait_caught_up
from tests.support.builders import StreamNames, layout_for, new_metadata

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass
class ProjectionEnv:
    nc: NatsClient
    store: EventStore
    layout: StreamLayout
    dsn: str
    pool: asyncpg.Pool
    nats_url: str

    @property
    def source(self) -> EventSource:
        layout = self.layout
        return EventSource(layout.events_stream, layout.events_prefix, layout.partitions)

    # -- writing ----------------------------------------------------------------------

    async def append(self, sid: str, events: Sequence[CheckoutEvent], version: int) -> int:
        command = f"cmd-{ULID()}"
        metadata = [new_metadata(command) for _ in events]
        result = await self.store.append(sid, events, metadata, expected_version=version)
        return result.last_sequence

    def lifecycles(self, count: int, *, seed: int = 1) -> list[list[CheckoutEvent]]:
        rng = random.Random(seed)
        prefix = f"cs_{seed}_{ULID()}_"[-20:]
        return [lifecycle(rng, sid, T0) for sid in session_ids(prefix, count)]

    async def load_one(self, sid: str, *, seed: int = 7) -> int:
        """Append one whole realistic lifecycle for ``sid``; returns its last sequence."""
        found = await drive(self.append, [lifecycle(random.Random(seed), sid, T0)])
        return found[sid]

    async def load(self, count: int, *, seed: int = 1, concurrency: int = 32) -> dict[str, int]:
        """Append ``count`` realistic sessions; returns session id -> last sequence."""
        return await drive(self.append, self.lifecycles(count, seed=seed), concurrency=concurrency)

    # -- projecting -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def projector(
        self,
        *,
        name: str = "live",
        batch_size: int = 500,
        claim_interval: float = 0.2,
        appliers: int = 1,
    ) -> AsyncIterator[Projector]:
        projector = Projector(
            nc=self.nc,
            pool=self.pool,
            dsn=self.dsn,
            source=self.source,
            bindings=[Binding(p) for p in all_projections()],
            settings=ProjectorSettings(
                name=name, batch_size=batch_size, claim_interval=claim_interval, appliers=appliers
            ),
        )
        task = asyncio.create_task(projector.run())
        try:
            yield projector
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def projector_process(self, log: Path, *, name: str = "live") -> subprocess.Popen[bytes]:
        """`checkout-orchestrator projections run` on this stream and database."""
        layout = self.layout
        env = {
            **os.environ,
            "NATS_URL": self.nats_url,
            "DATABASE_URL": self.dsn,
            "CHECKOUT_EVENTS_STREAM": layout.events_stream,
            "CHECKOUT_EVENTS_PREFIX": layout.events_prefix,
            "CHECKOUT_COMMANDS_STREAM": layout.commands_stream,
            "CHECKOUT_COMMANDS_PREFIX": layout.commands_prefix,
            "CHECKOUT_PARTITIONS": str(layout.partitions),
            "CHECKOUT_PROJECTOR_NAME": name,
            "CHECKOUT_PROJECTOR_CLAIM_INTERVAL": "0.3",
            "CHECKOUT_DATA_DIR": str(log.parent / "data"),
        }
        command = [str(Path(sys.executable).parent / "checkout-orchestrator"), "projections", "run"]
        with log.open("ab") as out:
            return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    async def owners(self, name: str = "live") -> dict[int, list[int]]:
        async with self.pool.acquire() as conn:
            return await owners(conn, name)

    async def applied(self) -> int:
        """Events in the timeline read model (grows as projectors commit)."""
        async with self.pool.acquire() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM session_timeline"))

    async def wait_caught_up(self, timeout: float = 60.0) -> float:
        return await wait_caught_up(self.pool, self.nc, self.source, timeout=timeout)

    # -- what the read models must hold ------------------------------------------------

    async def stream(self) -> list[StreamMessage]:
        return await read_all(self.nc, self.source)

    async def expected(self) -> Expected:
        return expected_from(await self.stream())

    async def actual(self) -> Expected:
        async with self.pool.acquire() as conn:
            return await actual_from(conn)


@dataclass
class Expected:
    sessions: dict[str, tuple[Any, ...]]
    timeline: set[tuple[str, int]]
    totals: dict[tuple[Any, ...], tuple[int, int]]
    routing: set[tuple[Any, ...]]


def _normal(values: Sequence[Any]) -> tuple[Any, ...]:
    """Row values with JSON text parsed, so text formatting differences do not count."""
    out = []
    for value in values:
        if isinstance(value, str) and value[:1] in "[{":
            out.append(json.dumps(json.loads(value), sort_keys=True))
        else:
            out.append(value)
    return tuple(out)


def expected_from(messages: Sequence[StreamMessage]) -> Expected:
    """The fold of every decodable event, in stream order, into each read model."""
    states: dict[str, SessionState] = {}
    timeline: set[tuple[str, int]] = set()
    routing: set[tuple[Any, ...]] = set()
    for message in sorted(messages, key=lambda m: m.sequence):
        recorded = message.event
        if recorded is None:
            continue
        timeline.add((recorded.session_id, recorded.sequence))
        if (row := routing_model.row_values(recorded)) is not None:
            routing.add(_normal(row))
        with contextlib.suppress(ValueError):
            states[recorded.session_id] = apply(states.get(recorded.session_id), recorded)
    sessions = {sid: _normal(sessions_model.row_values(s)) for sid, s in states.items()}
    totals = totals_of([s.core for s in states.values()])
    return Expected(sessions, timeline, totals, routing)


async def actual_from(conn: asyncpg.Connection) -> Expected:
    names = [c.name for c in sessions_model.COLUMNS]
    rows = await conn.fetch(f"SELECT {', '.join(names)} FROM checkout_sessions")  # noqa: S608
    sessions = {row["session_id"]: _normal(tuple(row.values())) for row in rows}
    timeline = {
        (r["session_id"], r["sequence"])
        for r in await conn.fetch("SELECT session_id, sequence FROM session_timeline")
    }
    totals: dict[tuple[Any, ...], tuple[int, int]] = defaultdict(lambda: (0, 0))
    for r in await conn.fetch(
        "SELECT day, provider, currency, status, sessions, amount FROM provider_daily_totals "
        "WHERE sessions <> 0 OR amount <> 0"
    ):
        totals[(r["day"], r["provider"], r["currency"], r["status"])] = (r["sessions"], r["amount"])
    routing_names = [c.name for c in routing_model.COLUMNS]
    routing = {
        _normal(tuple(r.values()))
        for r in await conn.fetch(
            f"SELECT {', '.join(routing_names)} FROM routing_decisions"  # noqa: S608
        )
    }
    return Expected(sessions, timeline, dict(totals), routing)


@contextlib.asynccontextmanager
async def projection_env(
    nats_url: str, database_url: str, names: StreamNames, *, partitions: int = 16
) -> AsyncIterator[ProjectionEnv]:
    layout = layout_for(names, partitions=partitions)
    await migrate(database_url)
    nc = await nats.connect(nats_url)
    try:
        await ensure_streams(nc, layout)
        store = EventStore(nc, layout)
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
        try:
            yield ProjectionEnv(nc, store, layout, database_url, pool, nats_url)
        finally:
            await store.close()
            await pool.close()
    finally:
        await nc.close()
