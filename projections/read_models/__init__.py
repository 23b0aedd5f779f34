"""The read models, one per query, each a `Projection` that writes a batch of events.

    sessions       rm_sessions_v<N>          view checkout_sessions       one row per session
    timeline       rm_timeline_v<N>          view session_timeline        one row per event
    daily_totals   rm_daily_totals_v<N>      view provider_daily_totals   day x provider x currency
                   rm_daily_totals_members_v<N>                           x status: count, amount
    routing        rm_routing_v<N>           view routing_decisions       one row per decision

Contract of `Projection.plan(conn, version, events)`: ``events`` are in stream order, all
above the projection's checkpoint, and the caller holds the transaction that also
advances the checkpoint. ``plan`` reads what it needs (at most one ``SELECT``), folds, and
returns its writes as set-based statements without running them: the batch sends the
writes of every read model, the parked events and the checkpoints in one round trip
(`projections.read_models.sql.fused`). The writes are idempotent on their own (a row
remembers the last sequence applied to it), so a replay never double counts even without
the checkpoint. Events its fold refuses are returned as `Refusal` for the caller to
park; a database error propagates. ``apply`` plans and runs the writes at once.

`Projection.forget(conn, version, forgotten)` gets the batch's `CustomerForgotten` events
(they are no session's: ``apply`` never sees them) and blanks the personal data the read
model holds for those subjects, in the same transaction (docs/privacy.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from projections.decoding import CustomerForgotten, StoredEvent
from projections.read_models.sql import Statement, run

__all__ = [
    "PROJECTION_NAMES",
    "Plan",
    "Projection",
    "ReadModel",
    "Refusal",
    "all_projections",
    "projection",
]


@dataclass(frozen=True, slots=True)
class Refusal:
    event: StoredEvent
    error: str


@dataclass(frozen=True, slots=True)
class Plan:
    writes: list[Statement]
    refusals: list[Refusal]


class Projection(Protocol):
    @property
    def name(self) -> str: ...

    async def plan(
        self, conn: asyncpg.Connection, version: int, events: Sequence[StoredEvent]
    ) -> Plan: ...

    async def apply(
        self, conn: asyncpg.Connection, version: int, events: Sequence[StoredEvent]
    ) -> list[Refusal]: ...

    async def forget(
        self, conn: asyncpg.Connection, version: int, forgotten: Sequence[CustomerForgotten]
    ) -> None: ...


class ReadModel:
    """What the four read models share: ``apply`` is ``plan`` and its writes, at once."""

    name: str

    async def plan(
        self, conn: asyncpg.Connection, version: int, events: Sequence[StoredEvent]
    ) -> Plan:
        raise NotImplementedError

    async def apply(
        self, conn: asyncpg.Connection, version: int, events: Sequence[StoredEvent]
    ) -> list[Refusal]:
        plan = await self.plan(conn, version, events)
        await run(conn, plan.writes)
        return plan.refusals


def all_projections() -> list[Projection]:
    from projections.read_models.daily_totals import DailyTotals  # noqa: PLC0415
    from projections.read_models.routing import RoutingDecisions  # noqa: PLC0415
    from projections.read_models.sessions import Sessions  # noqa: PLC0415
    from projections.read_models.timeline import Timeline  # noqa: PLC0415

    return [Sessions(), Timeline(), DailyTotals(), RoutingDecisions()]


PROJECTION_NAMES = ("sessions", "timeline", "daily_totals", "routing")


def projection(name: str) -> Projection:
    """The projection called ``name``; `KeyError` when there is none."""
    found = {p.name: p for p in all_projections()}
    return found[name]
