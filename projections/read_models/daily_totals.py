"""Daily totals per provider x currency x status: how many sessions, for what amount.

A session counts once, in the bucket of its creation day (UTC), its current provider
(empty while unrouted), currency and status, for its best known amount. Rows are kept
per stream partition too (the view sums them), so projectors owning different
partitions never wait on each other's rows. A members table
remembers each session's bucket: when an event changes the bucket (a status change, a
fallback to another provider, a provider total), the batch moves the session out of the
old bucket and into the new one. Per batch: one ``SELECT`` of members, the fold in Python
(`projections.fold.advance`), an upsert of members and one of summed bucket deltas
(sent with the batch's other writes).
A member only changes for a higher ``last_sequence``, so a replay moves nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, date
from typing import Any

import asyncpg

from projections.decoding import CustomerForgotten, StoredEvent
from projections.fold import Core, Lifecycle, Unapplicable, advance
from projections.read_models import Plan, ReadModel, Refusal
from projections.read_models.sql import Column, Statement, table, unnest_insert

__all__ = ["Bucket", "DailyTotals", "bucket_of", "totals_of"]

Bucket = tuple[date, str, str, str]
"""(day, provider or '', currency, status)"""

MEMBER_COLUMNS = (
    Column("session_id", "text"),
    Column("created_at", "timestamptz"),
    Column("provider", "text"),
    Column("currency", "text"),
    Column("status", "text"),
    Column("amount_requested", "int8"),
    Column("amount_total", "int8"),
    Column("lifecycle", "text"),
    Column("attempt", "int4"),
    Column("payment_status", "text"),
    Column("last_sequence", "int8"),
)
TOTAL_COLUMNS = (
    Column("day", "date"),
    Column("provider", "text"),
    Column("currency", "text"),
    Column("status", "text"),
    Column("partition", "int4"),
    Column("sessions", "int8"),
    Column("amount", "int8"),
)


def bucket_of(core: Core) -> Bucket:
    day = core.created_at.astimezone(UTC).date()
    return day, core.provider or "", core.currency, core.status.value


def totals_of(cores: Sequence[Core]) -> dict[Bucket, tuple[int, int]]:
    """The totals a set of sessions adds up to (what the read model must hold)."""
    totals: dict[Bucket, list[int]] = defaultdict(lambda: [0, 0])
    for core in cores:
        entry = totals[bucket_of(core)]
        entry[0] += 1
        entry[1] += core.amount or 0
    return {key: (n, amount) for key, (n, amount) in totals.items()}


def _core(row: Mapping[str, Any]) -> Core:
    return Core(
        session_id=row["session_id"],
        lifecycle=Lifecycle(row["lifecycle"]),
        currency=row["currency"],
        created_at=row["created_at"],
        amount_requested=row["amount_requested"],
        amount_total=row["amount_total"],
        provider=row["provider"] or None,
        attempt=row["attempt"],
        payment_status=row["payment_status"],
        last_sequence=row["last_sequence"],
    )


def _member(core: Core) -> tuple[Any, ...]:
    return (
        core.session_id, core.created_at, core.provider or "", core.currency, core.status.value,
        core.amount_requested, core.amount_total, core.lifecycle.value, core.attempt,
        core.payment_status, core.last_sequence,
    )  # fmt: skip


def _deltas(
    before: Mapping[str, Core], after: Mapping[str, Core], partitions: Mapping[str, int]
) -> list[tuple[Any, ...]]:
    """Summed (sessions, amount) changes per bucket and partition; zero nets left out.

    Rows are per partition so that workers owning different partitions never touch the
    same row; sorted, so that lock order is the same in every batch anyway.
    """
    delta: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    for sid, core in after.items():
        partition = partitions[sid]
        old = before.get(sid)
        if old is not None:
            entry = delta[(*bucket_of(old), partition)]
            entry[0] -= 1
            entry[1] -= old.amount or 0
        entry = delta[(*bucket_of(core), partition)]
        entry[0] += 1
        entry[1] += core.amount or 0
    return [(*key, n, amount) for key, (n, amount) in sorted(delta.items()) if n or amount]


def partition_of_subject(subject: str) -> int:
    """The partition token of ``<prefix>.<p>.<session id>.<type>``; -1 when there is none."""
    parts = subject.rsplit(".", 3)
    return int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else -1


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


class DailyTotals(ReadModel):
    name = "daily_totals"

    async def forget(
        self, conn: asyncpg.Connection, version: int, forgotten: Sequence[CustomerForgotten]
    ) -> None:
        """Holds no personal data (amounts, statuses, providers, countries only)."""

    async def plan(
        self, conn: asyncpg.Connection, version: int, events: Sequence[StoredEvent]
    ) -> Plan:
        members = table("daily_totals_members", version)
        ids = list({recorded.session_id for recorded in events})
        rows = await conn.fetch(
            f"SELECT * FROM {members} WHERE session_id = ANY($1::text[])",  # noqa: S608
            ids,
        )
        before = {row["session_id"]: _core(row) for row in rows}
        current = dict(before)
        changed: dict[str, Core] = {}
        refused: list[Refusal] = []
        partitions: dict[str, int] = {}
        for recorded in events:
            sid = recorded.session_id
            partitions[sid] = partition_of_subject(recorded.subject)
            try:
                new = advance(current.get(sid), recorded)
            except Unapplicable as exc:
                refused.append(Refusal(recorded, str(exc)))
                continue
            if new is not current.get(sid):
                current[sid] = changed[sid] = new
        writes = self._writes(version, before, changed, partitions) if changed else []
        return Plan(writes, refused)

    @staticmethod
    def _writes(
        version: int,
        before: Mapping[str, Core],
        changed: Mapping[str, Core],
        partitions: Mapping[str, int],
    ) -> list[Statement]:
        members = table("daily_totals_members", version)
        updates = ", ".join(f"{c.name} = EXCLUDED.{c.name}" for c in MEMBER_COLUMNS[1:])
        upsert = unnest_insert(
            members,
            MEMBER_COLUMNS,
            f"ON CONFLICT (session_id) DO UPDATE SET {updates} "
            f"WHERE {members}.last_sequence < EXCLUDED.last_sequence",
        )
        writes = [Statement(upsert, tuple(_columns([_member(core) for core in changed.values()])))]
        deltas = _deltas(before, changed, partitions)
        if deltas:
            totals = table("daily_totals", version)
            add = unnest_insert(
                totals,
                TOTAL_COLUMNS,
                f"ON CONFLICT (day, provider, currency, status, partition) DO UPDATE SET "
                f"sessions = {totals}.sessions + EXCLUDED.sessions, "
                f"amount = {totals}.amount + EXCLUDED.amount",
            )
            writes.append(Statement(add, tuple(_columns(deltas))))
        return writes
