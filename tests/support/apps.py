"""Running the system in-process for a test: the orchestrator, the read side, the gateway
(HTTP commands, queries and webhooks) and the four provider simulators.

`running_stack` starts what `up --sandbox` runs, on the suite's NATS and Postgres, with
stream names and a database of the test's own, and yields a `Stack`; ``settings_for``
builds the `Settings` of a test's streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from events.envelope import RecordedEvent
from events.values import Provider
from orchestrator.bootstrap import (
    Endpoints,
    Gateway,
    ReadSide,
    gateway,
    orchestrator,
    privacy,
    read_side,
)
from orchestrator.jetstream.event_store import EventStore
from orchestrator.providers.base import PaymentProvider
from orchestrator.sandbox.fleet import SandboxFleet
from orchestrator.settings import Settings
from orchestrator.telemetry import Telemetry
from tests.support.builders import StreamNames, layout_for
from tests.support.waiting import wait_until

__all__ = [
    "TERMINAL_STATUSES",
    "TERMINAL_TYPES",
    "Stack",
    "inbox_idle",
    "running_stack",
    "session_where",
    "settings_for",
    "terminal_events",
]

TERMINAL_TYPES = frozenset({"completed", "expired", "canceled", "failed"})
TERMINAL_STATUSES = frozenset({"complete", "expired", "canceled", "failed"})

_STACK_DEFAULTS: dict[str, Any] = {
    "api_auth": "disabled",
    "http_port": 0,
    "settlement_interval_seconds": 60.0,
    "webhook_worker_interval_seconds": 0.2,
}


def settings_for(names: StreamNames, **overrides: Any) -> Settings:
    """`Settings` on the test's own streams; ``overrides`` are other `Settings` fields."""
    layout = layout_for(names)
    return Settings(
        events_stream=layout.events_stream,
        events_prefix=layout.events_prefix,
        commands_stream=layout.commands_stream,
        commands_prefix=layout.commands_prefix,
        **overrides,
    )


@dataclass(frozen=True, slots=True)
class Stack:
    fleet: SandboxFleet
    read: ReadSide
    gateway: Gateway
    http: httpx.AsyncClient
    store: EventStore
    settings: Settings
    nats_url: str
    database_url: str

    async def history(self, session_id: str) -> tuple[RecordedEvent, ...]:
        return (await self.store.load(session_id)).events

    async def inbox_rows(self) -> list[dict[str, Any]]:
        async with self.read.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT provider, event_id, status, outcome, session_id, attempts"
                " FROM webhook_inbox ORDER BY id"
            )
        return [dict(r) for r in rows]


@asynccontextmanager
async def running_stack(
    nats_url: str,
    database_url: str,
    names: StreamNames,
    *,
    adjust_providers: Callable[[SandboxFleet], Mapping[Provider, PaymentProvider]] | None = None,
    telemetry: Telemetry | None = None,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    """The whole system, as `up --sandbox` runs it; ``overrides`` are `Settings` fields
    (by default: no API keys, any free HTTP port, settlement every 60 s, the webhook inbox
    worked every 0.2 s)."""
    settings = settings_for(names, **(_STACK_DEFAULTS | overrides))
    endpoints = Endpoints(nats_url, database_url, embedded_nats=False, embedded_postgres=False)
    async with SandboxFleet() as fleet:
        providers = adjust_providers(fleet) if adjust_providers else fleet.providers
        async with (
            privacy(settings, endpoints) as personal,
            orchestrator(
                settings, nats_url, providers=providers, telemetry=telemetry, personal=personal
            ) as core,
            read_side(
                settings, endpoints, serve_http=False, telemetry=telemetry, personal=personal
            ) as read,
            gateway(settings, endpoints, read, providers, telemetry=telemetry) as gw,
            httpx.AsyncClient(base_url=gw.http_url, timeout=30) as http,
        ):
            fleet.point_webhooks_at(gw.http_url)
            yield Stack(fleet, read, gw, http, core.store, settings, nats_url, database_url)


async def session_where(
    http: httpx.AsyncClient, session_id: str, timeout: float = 15.0, **expected: Any
) -> dict[str, Any]:
    """The session as the query API serves it, once its fields have the ``expected`` values."""

    async def matching() -> dict[str, Any] | None:
        response = await http.get(f"/v1/checkout-sessions/{session_id}")
        if response.status_code != 200:
            return None
        body: dict[str, Any] = response.json()
        return body if all(body.get(k) == v for k, v in expected.items()) else None

    return await wait_until(matching, timeout, what=f"session {session_id} with {expected}")


def terminal_events(events: Iterable[RecordedEvent]) -> list[str]:
    return [r.event.type for r in events if r.event.type in TERMINAL_TYPES]


async def inbox_idle(stack: Stack) -> dict[str, int] | None:
    """Inbox counts once nothing is pending any more (None while something is)."""
    counts = await stack.gateway.inbox.counts()
    return None if counts.get("pending") else counts or {"empty": 0}
