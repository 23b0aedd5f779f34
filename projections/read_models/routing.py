"""The routing decisions read model: why each session went to the provider it went to.

One row per decision: the router's choice (``routed``: rules version, matched rule,
candidates in priority order, candidates dropped with their reason) and each fallback
after a provider failed (``fallback``: the failed provider is dropped with its error).
Insert-only; a replayed event hits the primary key and is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from projections.decoding import (
    CheckoutRouted,
    CustomerForgotten,
    ProviderCallFailed,
    StoredEvent,
)
from projections.read_models import Plan, ReadModel
from projections.read_models.sql import Column, Statement, dumps, table, unnest_insert

__all__ = ["COLUMNS", "RoutingDecisions", "row_values"]

COLUMNS = (
    Column("session_id", "text"),
    Column("sequence", "int8"),
    Column("kind", "text"),
    Column("occurred_at", "timestamptz"),
    Column("attempt", "int4"),
    Column("provider", "text"),
    Column("rules_version", "text"),
    Column("matched_rule", "text"),
    Column("candidates", "jsonb"),
    Column("dropped", "jsonb"),
)


def row_values(recorded: StoredEvent) -> tuple[Any, ...] | None:
    """The decision an event records, or None when it records none."""
    event = recorded.event
    head = (event.session_id, recorded.sequence)
    if isinstance(event, CheckoutRouted):
        why = event.explanation
        return (
            *head, "routed", event.occurred_at, event.attempt, event.provider.value,
            why.rules_version, why.matched_rule,
            dumps([c.value for c in why.candidates]),
            dumps([{"provider": d.provider.value, "reason": d.reason} for d in why.dropped]),
        )  # fmt: skip
    if isinstance(event, ProviderCallFailed) and event.fallback is not None:
        reason = f"{event.error_code}: {event.message}"
        return (
            *head, "fallback", event.occurred_at, event.attempt + 1, event.fallback.value,
            None, None, dumps([event.fallback.value]),
            dumps([{"provider": event.provider.value, "reason": reason}]),
        )  # fmt: skip
    return None


class RoutingDecisions(ReadModel):
    name = "routing"

    async def forget(
        self, conn: asyncpg.Connection, version: int, forgotten: Sequence[CustomerForgotten]
    ) -> None:
        """Holds no personal data (amounts, statuses, providers, countries only)."""

    async def plan(
        self,
        conn: asyncpg.Connection,  # noqa: ARG002 - it reads nothing
        version: int,
        events: Sequence[StoredEvent],
    ) -> Plan:
        rows = [row for recorded in events if (row := row_values(recorded)) is not None]
        if not rows:
            return Plan([], [])
        statement = unnest_insert(
            table("routing", version), COLUMNS, "ON CONFLICT (session_id, sequence) DO NOTHING"
        )
        return Plan([Statement(statement, tuple(list(c) for c in zip(*rows, strict=True)))], [])
