"""The durable webhook inbox in Postgres: written before the provider gets its 2xx.

Guarantees: a provider event id is stored once (``UNIQUE (provider, event_id)``), so a
webhook delivered three times is one row and one effect. Rows are claimed with
``FOR UPDATE SKIP LOCKED``: several workers never process the same row at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

__all__ = ["InboxRow", "UnresolvedRow", "WebhookInbox"]

_KEPT_HEADERS_EXCLUDE = frozenset({"authorization", "cookie", "x-api-key"})


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: int
    provider: str
    event_id: str
    received_at: datetime
    headers: dict[str, str]
    body: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class UnresolvedRow:
    """A held notification no session of ours could be found for (for ``webhooks status``)."""

    id: int
    provider: str
    event_id: str
    received_at: datetime
    outcome: str


class WebhookInbox:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def store(
        self,
        provider: str,
        event_id: str,
        headers: Mapping[str, str],
        body: bytes,
        received_at: datetime,
    ) -> int | None:
        """The new row's id, or None when this provider event is already in the inbox."""
        kept = {k.lower(): v for k, v in headers.items() if k.lower() not in _KEPT_HEADERS_EXCLUDE}
        row_id: int | None = await self._pool.fetchval(
            """
            INSERT INTO webhook_inbox (provider, event_id, received_at, headers, body)
            VALUES ($1, $2, $3, $4::jsonb, $5)
            ON CONFLICT (provider, event_id) DO NOTHING
            RETURNING id
            """,
            provider,
            event_id,
            received_at,
            json.dumps(kept),
            body,
        )
        return row_id

    async def claim_due(self, conn: asyncpg.Connection, limit: int) -> list[InboxRow]:
        """Pending rows that are due, locked for this transaction."""
        rows = await conn.fetch(
            """
            SELECT id, provider, event_id, received_at, headers, body, attempts
            FROM webhook_inbox
            WHERE status = 'pending' AND not_before <= now()
            ORDER BY id
            LIMIT $1
            FOR UPDATE SKIP LOCKED
            """,
            limit,
        )
        return [
            InboxRow(
                id=r["id"],
                provider=r["provider"],
                event_id=r["event_id"],
                received_at=r["received_at"],
                headers=json.loads(r["headers"]),
                body=bytes(r["body"]),
                attempts=r["attempts"],
            )
            for r in rows
        ]

    @staticmethod
    async def settle(
        conn: asyncpg.Connection,
        row_id: int,
        status: str,
        outcome: str,
        session_id: str | None = None,
    ) -> None:
        await conn.execute(
            """
            UPDATE webhook_inbox
            SET status = $2, outcome = $3, session_id = coalesce($4, session_id),
                attempts = attempts + 1, processed_at = now(),
                -- a payload about a forgotten customer is not kept (docs/privacy.md)
                body = CASE WHEN forgotten THEN '\\x'::bytea ELSE body END,
                headers = CASE WHEN forgotten THEN '{}'::jsonb ELSE headers END
            FROM (SELECT EXISTS (
                SELECT 1 FROM data_subject_sessions s JOIN data_subjects d USING (subject_id)
                WHERE d.forgotten_at IS NOT NULL AND s.session_id = coalesce(
                    $4, (SELECT session_id FROM webhook_inbox WHERE id = $1))
            ) AS forgotten) AS subject
            WHERE id = $1
            """,
            row_id,
            status,
            outcome[:1000],
            session_id,
        )

    @staticmethod
    async def retry_later(
        conn: asyncpg.Connection, row_id: int, outcome: str, delay: timedelta
    ) -> None:
        await conn.execute(
            """
            UPDATE webhook_inbox
            SET attempts = attempts + 1, outcome = $2, not_before = now() + $3
            WHERE id = $1
            """,
            row_id,
            outcome[:1000],
            delay,
        )

    async def reopen(self, *, provider: str | None = None, since: datetime | None = None) -> int:
        """Mark processed rows pending again (``webhooks replay`` after a bug fix)."""
        result: str = await self._pool.execute(
            """
            UPDATE webhook_inbox SET status = 'pending', not_before = now(), attempts = 0
            WHERE status <> 'pending'
              AND ($1::text IS NULL OR provider = $1)
              AND ($2::timestamptz IS NULL OR received_at >= $2)
            """,
            provider,
            since,
        )
        return int(result.rsplit(maxsplit=1)[-1])

    async def counts(self) -> dict[str, int]:
        rows = await self._pool.fetch(
            "SELECT status, count(*) AS n FROM webhook_inbox GROUP BY status"
        )
        return {r["status"]: int(r["n"]) for r in rows}

    async def unresolved(self, limit: int = 20) -> list[UnresolvedRow]:
        """The newest rows kept as ``unresolved``: held (the provider got its 2xx), not lost."""
        rows = await self._pool.fetch(
            """
            SELECT id, provider, event_id, received_at, coalesce(outcome, '') AS outcome
            FROM webhook_inbox WHERE status = 'unresolved'
            ORDER BY id DESC LIMIT $1
            """,
            limit,
        )
        return [UnresolvedRow(**dict(r)) for r in rows]

    async def providers_with_unresolved(self, since: datetime | None) -> set[str]:
        """Providers with rows settled ``unresolved`` after ``since`` (all, when None)."""
        rows = await self._pool.fetch(
            """
            SELECT DISTINCT provider FROM webhook_inbox
            WHERE status = 'unresolved' AND ($1::timestamptz IS NULL OR processed_at > $1)
            """,
            since,
        )
        return {r["provider"] for r in rows}
