"""The current-sessions read model: one row per checkout session, every canonical field.

Per batch: one ``SELECT`` of the rows the batch touches, the fold in Python
(`projections.fold.apply`), one ``unnest`` upsert of the changed rows (sent with the
batch's other writes). The upsert only
replaces a row with a higher ``last_sequence``, so a replayed batch changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from projections.decoding import CustomerForgotten, StoredEvent
from projections.fold import Core, Lifecycle, SessionState, Unapplicable, apply
from projections.read_models import Plan, ReadModel, Refusal
from projections.read_models.sql import (
    Column,
    Statement,
    blank_forgotten,
    dumps,
    table,
    unnest_insert,
)

__all__ = ["COLUMNS", "Sessions", "row_values", "state_from_row"]

COLUMNS = (
    Column("session_id", "text"),
    Column("lifecycle", "text"),
    Column("status", "text"),
    Column("mode", "text"),
    Column("ui_mode", "text"),
    Column("provider", "text"),
    Column("attempt", "int4"),
    Column("provider_session_id", "text"),
    Column("livemode", "bool"),
    Column("has_client_secret", "bool"),
    Column("currency", "text"),
    Column("amount_requested", "int8"),
    Column("amount_subtotal", "int8"),
    Column("amount_discount", "int8"),
    Column("amount_tax", "int8"),
    Column("amount_shipping", "int8"),
    Column("amount_total", "int8"),
    Column("line_items", "jsonb"),
    Column("customer_email", "text"),
    Column("customer_country", "text"),
    Column("customer", "jsonb"),
    Column("urls", "jsonb"),
    Column("checkout_url", "text"),
    Column("expires_at", "timestamptz"),
    Column("payment_status", "text"),
    Column("provider_status", "text"),
    Column("provider_references", "jsonb"),
    Column("metadata", "jsonb"),
    Column("client_reference_id", "text"),
    Column("failure_code", "text"),
    Column("status_reason", "text"),
    Column("created_at", "timestamptz"),
    Column("updated_at", "timestamptz"),
    Column("completed_at", "timestamptz"),
    Column("event_count", "int4"),
    Column("last_sequence", "int8"),
)

_AMOUNT_FIELDS = ("subtotal", "discount", "tax", "shipping", "total")


def _upsert(target: str) -> str:
    updates = ", ".join(f"{c.name} = EXCLUDED.{c.name}" for c in COLUMNS[1:])
    conflict = (
        f"ON CONFLICT (session_id) DO UPDATE SET {updates} "
        f"WHERE {target}.last_sequence < EXCLUDED.last_sequence"
    )
    return unnest_insert(target, COLUMNS, conflict)


def row_values(state: SessionState) -> tuple[Any, ...]:
    """The row of ``state``, in the order of `COLUMNS` (JSON fields as text)."""
    core = state.core
    amounts: Mapping[str, Any] = state.amounts or {}
    customer = state.customer
    return (
        core.session_id,
        core.lifecycle.value,
        core.status.value,
        state.mode,
        state.ui_mode,
        core.provider,
        core.attempt,
        state.provider_session_id,
        state.livemode,
        state.has_client_secret,
        core.currency,
        core.amount_requested,
        *(amounts.get(field) for field in _AMOUNT_FIELDS),
        dumps(list(state.line_items)),
        customer.get("email"),
        customer.get("country"),
        dumps(customer),
        dumps(state.urls),
        state.checkout_url,
        state.expires_at,
        core.payment_status,
        state.provider_status,
        dumps(state.provider_references),
        dumps(state.metadata),
        state.client_reference_id,
        state.failure_code,
        state.status_reason,
        core.created_at,
        state.updated_at,
        state.completed_at,
        state.event_count,
        core.last_sequence,
    )


def _amounts(row: Mapping[str, Any]) -> dict[str, Any] | None:
    found = {f: row[f"amount_{f}"] for f in _AMOUNT_FIELDS if row[f"amount_{f}"] is not None}
    return {"currency": row["currency"], **found} if found else None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def state_from_row(row: Mapping[str, Any]) -> SessionState:
    """Read a stored row back into the fold's state (the inverse of `row_values`)."""
    created_at: datetime = row["created_at"]
    core = Core(
        session_id=row["session_id"],
        lifecycle=Lifecycle(row["lifecycle"]),
        currency=row["currency"],
        created_at=created_at,
        amount_requested=row["amount_requested"],
        amount_total=row["amount_total"],
        provider=row["provider"],
        attempt=row["attempt"],
        payment_status=row["payment_status"],
        last_sequence=row["last_sequence"],
    )
    return SessionState(
        core=core,
        mode=row["mode"],
        ui_mode=row["ui_mode"],
        line_items=tuple(_json(row["line_items"])),
        customer=_json(row["customer"]),
        urls=_json(row["urls"]),
        metadata=_json(row["metadata"]),
        client_reference_id=row["client_reference_id"],
        expires_at=row["expires_at"],
        updated_at=row["updated_at"],
        event_count=row["event_count"],
        provider_session_id=row["provider_session_id"],
        livemode=row["livemode"],
        has_client_secret=row["has_client_secret"],
        amounts=_amounts(row),
        checkout_url=row["checkout_url"],
        provider_status=row["provider_status"],
        provider_references=_json(row["provider_references"]),
        failure_code=row["failure_code"],
        status_reason=row["status_reason"],
        completed_at=row["completed_at"],
    )


def _columns(states: Iterable[SessionState]) -> list[list[Any]]:
    rows = [row_values(state) for state in states]
    return [list(column) for column in zip(*rows, strict=True)]


# the customer of a forgotten subject's sessions: the erased marker, country kept
_FORGET = """
UPDATE {target} SET
    customer = jsonb_strip_nulls(jsonb_build_object(
        'kind', 'erased', 'subject', $1::text, 'country', customer->'country')),
    customer_email = NULL,
    metadata = metadata - $3::text[]
WHERE session_id = ANY($2::text[]) OR customer->>'subject' = $1::text
"""


class Sessions(ReadModel):
    name = "sessions"

    async def forget(
        self, conn: asyncpg.Connection, version: int, forgotten: Sequence[CustomerForgotten]
    ) -> None:
        await blank_forgotten(conn, _FORGET.format(target=table("sessions", version)), forgotten)

    async def plan(
        self, conn: asyncpg.Connection, version: int, events: Sequence[StoredEvent]
    ) -> Plan:
        target = table("sessions", version)
        ids = list({recorded.session_id for recorded in events})
        rows = await conn.fetch(
            f"SELECT * FROM {target} WHERE session_id = ANY($1::text[])",  # noqa: S608
            ids,
        )
        states: dict[str, SessionState] = {r["session_id"]: state_from_row(r) for r in rows}
        changed: dict[str, SessionState] = {}
        refused: list[Refusal] = []
        for recorded in events:
            sid = recorded.session_id
            try:
                new = apply(states.get(sid), recorded)
            except Unapplicable as exc:
                refused.append(Refusal(recorded, str(exc)))
                continue
            if new is not states.get(sid):
                states[sid] = changed[sid] = new
        writes = [Statement(_upsert(target), tuple(_columns(changed.values())))] if changed else []
        return Plan(writes, refused)
