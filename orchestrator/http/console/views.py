"""What the console shows beyond the query API: the webhook inbox, provider health and the
projections' status, as plain rows for the templates.

Reads only, except `replay_webhook` (one inbox row back to ``pending``, the one-row form of
``checkout-orchestrator webhooks replay``; the worker re-processes it under the same
command ids, so what already took effect is not applied twice). Inbox rows are shown
without their bodies or headers: those may carry personal data the read scope does not
return over the API.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from nats.aio.client import Client as NatsClient

from events.values import Provider
from orchestrator.routing.health import BreakerState, HealthBoard
from projections import EventSource
from projections.status import StatusReport, status_report

__all__ = [
    "INBOX_STATUSES",
    "InboxEntry",
    "ProviderHealth",
    "inbox_entries",
    "projection_status",
    "provider_health",
    "replay_webhook",
]

INBOX_STATUSES = ("unresolved", "rejected", "ignored", "pending", "done")


@dataclass(frozen=True, slots=True)
class InboxEntry:
    id: int
    provider: str
    event_id: str
    status: str
    attempts: int
    received_at: datetime
    processed_at: datetime | None
    session_id: str | None
    outcome: str | None


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    provider: str
    state: str
    probing: bool
    recent_calls: int
    recent_failures: int


async def inbox_entries(
    pool: asyncpg.Pool, status: str | None, limit: int = 100
) -> list[InboxEntry]:
    rows = await pool.fetch(
        """
        SELECT id, provider, event_id, status, attempts, received_at, processed_at,
               session_id, outcome
        FROM webhook_inbox WHERE ($1::text IS NULL OR status = $1)
        ORDER BY received_at DESC, id DESC LIMIT $2
        """,
        status,
        limit,
    )
    return [InboxEntry(**dict(row)) for row in rows]


async def inbox_counts(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, count(*) AS n FROM webhook_inbox GROUP BY status")
    return {row["status"]: int(row["n"]) for row in rows}


async def replay_webhook(pool: asyncpg.Pool, row_id: int) -> bool:
    """Put one processed row back in the queue; False if it is unknown or still pending."""
    result: str = await pool.execute(
        "UPDATE webhook_inbox SET status = 'pending', not_before = now(), attempts = 0 "
        "WHERE id = $1 AND status <> 'pending'",
        row_id,
    )
    return result.rsplit(maxsplit=1)[-1] == "1"


def provider_health(
    board: HealthBoard | None, providers: Iterable[Provider]
) -> list[ProviderHealth]:
    """Each configured provider's circuit and its calls in the breaker's window; an empty
    list when this process routes nothing (``up --role api``: the board is elsewhere)."""
    if board is None:
        return []
    view = board.view()
    rows = []
    for provider in providers:
        calls, failures = board.recent(provider)
        rows.append(
            ProviderHealth(
                provider=provider.value,
                state=view.states.get(provider, BreakerState.CLOSED).value,
                probing=provider in view.probing,
                recent_calls=calls,
                recent_failures=failures,
            )
        )
    return rows


async def projection_status(
    pool: asyncpg.Pool, nc: NatsClient, source: EventSource
) -> StatusReport:
    async with pool.acquire() as conn:
        return await status_report(conn, nc, source)
