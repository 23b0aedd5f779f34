"""A throw-away stream and database on the real servers, for one measurement."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from nats.aio.client import Client as NatsClient

from events import CheckoutEvent, EventMetadata
from orchestrator.bootstrap import Endpoints, connect_nats, new_ulid, open_pool, utc_now
from orchestrator.jetstream.connection import nats_options
from orchestrator.jetstream.event_store import EventStore
from orchestrator.jetstream.streams import StreamLayout, ensure_streams
from orchestrator.settings import Settings
from projections import migrate
from projections.source import EventSource

__all__ = ["Scratch", "scratch"]


@dataclass(frozen=True, slots=True)
class Scratch:
    """A throw-away stream and database on the real servers, for measurements."""

    nc: NatsClient
    pool: asyncpg.Pool
    dsn: str
    nats_url: str
    layout: StreamLayout
    append: Callable[[str, Sequence[CheckoutEvent], int], Awaitable[int]]
    kek: str
    """the key-encryption key of the scratch database's personal-data keys (a role
    process refuses to start on a configured database without one)"""

    @property
    def source(self) -> EventSource:
        layout = self.layout
        return EventSource(layout.events_stream, layout.events_prefix, layout.partitions)

    def environment(self) -> dict[str, str]:
        """Settings (environment variables) of a process working on this scratch."""
        layout = self.layout
        return {
            "NATS_URL": self.nats_url,
            "DATABASE_URL": self.dsn,
            "CHECKOUT_EVENTS_STREAM": layout.events_stream,
            "CHECKOUT_EVENTS_PREFIX": layout.events_prefix,
            "CHECKOUT_COMMANDS_STREAM": layout.commands_stream,
            "CHECKOUT_COMMANDS_PREFIX": layout.commands_prefix,
            "CHECKOUT_PARTITIONS": str(layout.partitions),
            "CHECKOUT_STREAM_REPLICAS": str(layout.replicas),
            "CHECKOUT_PRIVACY_KEK": self.kek,
        }


def _scratch_dsn(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@asynccontextmanager
async def scratch(
    settings: Settings, endpoints: Endpoints, *, replicas: int = 1
) -> AsyncIterator[Scratch]:
    """A unique stream (appended through the real event store) and a fresh database;
    ``replicas`` > 1 on a cluster (the production shape)."""
    tag = new_ulid()[-10:].lower()
    layout = StreamLayout(
        events_stream=f"MEASURE_{tag}",
        events_prefix=f"measure{tag}.events",
        partitions=settings.partitions,
        commands_stream=f"MEASURE_C_{tag}",
        commands_prefix=f"measure{tag}.commands",
        replicas=replicas,
    )
    admin = await asyncpg.connect(endpoints.database_url)
    database = f"measure_{tag}"
    await admin.execute(f'CREATE DATABASE "{database}"')
    dsn = _scratch_dsn(endpoints.database_url, database)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(admin.close)
        stack.push_async_callback(admin.execute, f'DROP DATABASE "{database}" WITH (FORCE)')
        nc = await connect_nats(endpoints.nats_url, "checkout-measure", nats_options(settings))
        stack.push_async_callback(nc.drain)
        await ensure_streams(nc, layout)
        js = nc.jetstream()
        stack.push_async_callback(js.delete_stream, layout.commands_stream)
        stack.push_async_callback(js.delete_stream, layout.events_stream)
        store = EventStore(nc, layout, timeout=settings.store_timeout_seconds)
        stack.push_async_callback(store.close)
        await migrate(dsn)
        pool = await open_pool(dsn, settings)
        stack.push_async_callback(pool.close)

        async def append(sid: str, events: Sequence[CheckoutEvent], version: int) -> int:
            command = new_ulid()
            metadata = [
                EventMetadata(
                    event_id=new_ulid(),
                    command_id=command,
                    correlation_id=command,
                    causation_id=command,
                    occurred_at=utc_now(),
                )
                for _ in events
            ]
            result = await store.append(sid, events, metadata, expected_version=version)
            return result.last_sequence

        kek = base64.b64encode(os.urandom(32)).decode()
        yield Scratch(nc, pool, dsn, endpoints.nats_url, layout, append, kek)
