"""The event timeline read model: one row per event of a session, with its envelope.

Holds what an audit or the ``as_of`` query needs: type, stream sequence, occurred-at,
the ids of the command, correlation and causation, the trace id from ``traceparent``,
and the payload in its current schema version (so it validates against the catalog),
its customer opened when it was sealed.
Insert-only; a replayed event hits the primary key and is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from projections.decoding import CustomerForgotten, StoredEvent
from projections.read_models import Plan, ReadModel
from projections.read_models.sql import Column, Statement, blank_forgotten, table, unnest_insert

__all__ = ["COLUMNS", "Timeline", "row_values", "trace_id"]

COLUMNS = (
    Column("session_id", "text"),
    Column("sequence", "int8"),
    Column("type", "text"),
    Column("schema_version", "int4"),
    Column("occurred_at", "timestamptz"),
    Column("event_id", "text"),
    Column("command_id", "text"),
    Column("correlation_id", "text"),
    Column("causation_id", "text"),
    Column("traceparent", "text"),
    Column("trace_id", "text"),
    Column("payload", "jsonb"),
)

_TRACE_ID_HEX = 32

# the stored payloads of a forgotten subject: the customer becomes the erased marker (a
# valid `ErasedCustomer`, so ``as_of`` still folds), the personal metadata is dropped
_FORGET = """
UPDATE {target} SET payload = payload
    || jsonb_build_object('customer', jsonb_build_object(
        'kind', 'erased', 'country', payload->'customer'->'country',
        'metadata_keys', coalesce(payload->'customer'->'metadata_keys', '[]'::jsonb)))
    || CASE WHEN payload ? 'metadata'
            THEN jsonb_build_object('metadata', (payload->'metadata') - $3::text[])
            ELSE '{{}}'::jsonb END
WHERE type IN ('requested', 'completed')
  AND jsonb_typeof(payload->'customer') = 'object'
  AND (session_id = ANY($2::text[]) OR payload->>'subject' = $1::text)
"""


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` (``00-<trace id>-<span id>-<flags>``)."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) < 4 or len(parts[1]) != _TRACE_ID_HEX:
        return None
    return parts[1]


def row_values(recorded: StoredEvent) -> tuple[Any, ...]:
    event, meta = recorded.event, recorded.metadata
    return (
        event.session_id,
        recorded.sequence,
        event.type,
        event.schema_version,
        meta.occurred_at,
        meta.event_id,
        meta.command_id,
        meta.correlation_id,
        meta.causation_id,
        meta.traceparent,
        trace_id(meta.traceparent),
        recorded.payload.decode(),
    )


class Timeline(ReadModel):
    name = "timeline"

    async def forget(
        self, conn: asyncpg.Connection, version: int, forgotten: Sequence[CustomerForgotten]
    ) -> None:
        await blank_forgotten(conn, _FORGET.format(target=table("timeline", version)), forgotten)

    async def plan(
        self,
        conn: asyncpg.Connection,  # noqa: ARG002 - it reads nothing
        version: int,
        events: Sequence[StoredEvent],
    ) -> Plan:
        if not events:
            return Plan([], [])
        rows = [row_values(recorded) for recorded in events]
        statement = unnest_insert(
            table("timeline", version), COLUMNS, "ON CONFLICT (session_id, sequence) DO NOTHING"
        )
        return Plan([Statement(statement, tuple(list(c) for c in zip(*rows, strict=True)))], [])
