"""One batch of stream messages -> one transaction: read models, parked events, checkpoints.

Inside the transaction, in this order, in a fixed number of round trips whatever the
batch holds (BEGIN, one per step below, one more when sealed customers are opened, COMMIT):
1. one call (`checkpoints.begin_batch`): shared switch locks of the followed projections
   (a rebuild's switch waits for us, and we for it), the version each projection writes
   now, and the checkpoints of the batch's partitions, row-locked ``FOR UPDATE``: a second
   owner of a partition (say, after a lost lock connection) waits there and then sees ours;
2. per projection, only the messages above its checkpoint: undecodable ones are parked,
   the others planned in one call (the sessions and the daily totals read the rows they
   fold, one ``SELECT`` each); events the fold refuses are parked;
3. one statement writes every read model's rows, the parked events and the checkpoints,
   advanced to the batch's last sequence per partition (`read_models.sql.fused`).

With a `PersonalData` opener, the sealed customers of the batch are opened first, inside
the transaction: their keys are share-locked until it commits, so a forget (which
destroys keys) waits for the batch, and its `CustomerForgotten` then blanks what the
batch wrote. `CustomerForgotten` events go to `Projection.forget`, not ``apply``.

So the effect of every event is written exactly once: the rows and the checkpoint commit
together, and anything at or below the checkpoint is skipped.

A poison event makes the set-based write fail as a whole (a data or constraint error, or
an exception in the fold). The batch is then retried with each event in its own
savepoint; the events that still fail are parked with their error and the rest commit.
Connection, lock and "no such table" errors are not poison: they propagate, nothing is
committed, and the projector retries the batch.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from events.errors import DecodeError
from projections.checkpoints import Binding, advance, begin_batch
from projections.decoding import CustomerForgotten, StoredEvent
from projections.read_models import Projection, Refusal
from projections.read_models.sql import Statement, fused
from projections.source import StreamMessage

__all__ = ["BatchOutcome", "PersonalData", "apply_batch", "is_poison_error"]


class PersonalData(Protocol):
    """Opens sealed personal data (`orchestrator.privacy.sealing.Opener`): given a
    connection in a transaction, the keys it reads stay share-locked until it ends."""

    async def open_stored(
        self, events: Sequence[StoredEvent], conn: asyncpg.Connection
    ) -> list[StoredEvent]: ...


_NOT_POISON = (
    OSError,
    TimeoutError,
    LookupError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.SyntaxOrAccessError,
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError,
    asyncpg.exceptions.PostgresSystemError,
)


def is_poison_error(exc: BaseException) -> bool:
    """An error one event can cause (bad data), not one of the infrastructure."""
    if not isinstance(exc, Exception) or isinstance(exc, _NOT_POISON):
        return False
    if isinstance(exc, asyncpg.PostgresError):
        return isinstance(
            exc, asyncpg.exceptions.DataError | asyncpg.exceptions.IntegrityConstraintViolationError
        )
    return True


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    messages: int
    parked: int
    positions: dict[int, int]
    """partition -> last stream sequence of the batch (now at or below every checkpoint)"""


@dataclass(frozen=True, slots=True)
class _Parked:
    projection: str
    version: int
    message: StreamMessage
    error: str


async def apply_batch(
    conn: asyncpg.Connection,
    bindings: Sequence[Binding],
    messages: Sequence[StreamMessage],
    personal: PersonalData | None = None,
) -> BatchOutcome:
    """Apply ``messages`` (stream order per partition) in one transaction; see module doc."""
    try:
        async with conn.transaction():
            return await _apply(conn, bindings, messages, personal, isolate=False)
    except Exception as exc:
        if not is_poison_error(exc):
            raise
    async with conn.transaction():
        return await _apply(conn, bindings, messages, personal, isolate=True)


async def _opened(
    conn: asyncpg.Connection, personal: PersonalData, messages: Sequence[StreamMessage]
) -> list[StreamMessage]:
    """``messages`` with their sealed customers opened (or erased); one that does not
    open (an altered ciphertext) becomes undecodable, to be parked."""
    events = [m.event for m in messages if m.event is not None]
    try:
        opened = iter(await personal.open_stored(events, conn))
        return [dataclasses.replace(m, event=next(opened)) if m.event else m for m in messages]
    except DecodeError:
        pass
    result = []
    for m in messages:
        if m.event is None:
            result.append(m)
            continue
        try:
            (event,) = await personal.open_stored([m.event], conn)
            result.append(dataclasses.replace(m, event=event))
        except DecodeError as exc:
            result.append(dataclasses.replace(m, event=None, error=str(exc)))
    return result


async def _apply(
    conn: asyncpg.Connection,
    bindings: Sequence[Binding],
    messages: Sequence[StreamMessage],
    personal: PersonalData | None,
    *,
    isolate: bool,
) -> BatchOutcome:
    partitions = sorted({m.partition for m in messages})
    versions, positions = await begin_batch(conn, bindings, partitions)
    if personal is not None:
        messages = await _opened(conn, personal, messages)
    parked: list[_Parked] = []
    writes: list[Statement] = []
    moved: dict[tuple[str, int], int] = {}
    for binding in bindings:
        name, version = binding.name, versions[binding.name]
        fresh = [m for m in messages if m.sequence > positions.get((name, m.partition), 0)]
        if not fresh:
            continue
        parked += [_Parked(name, version, m, m.error or "") for m in fresh if m.event is None]
        refusals = await _project(conn, binding.projection, version, fresh, writes, isolate=isolate)
        by_sequence = {m.sequence: m for m in fresh}
        parked += [_Parked(name, version, by_sequence[r.event.sequence], r.error) for r in refusals]
        for m in fresh:
            moved[(name, m.partition)] = max(moved.get((name, m.partition), 0), m.sequence)
    if parked:
        writes.append(_park(parked))
    # every read model's rows, the parked events and the checkpoints: one round trip
    if writes or moved:
        statement = fused(writes, advance(versions, moved))
        await conn.execute(statement.sql, *statement.args)
    last: dict[int, int] = {}
    for m in messages:
        last[m.partition] = max(last.get(m.partition, 0), m.sequence)
    return BatchOutcome(len(messages), len({p.message.sequence for p in parked}), last)


async def _project(
    conn: asyncpg.Connection,
    projection: Projection,
    version: int,
    fresh: Sequence[StreamMessage],
    writes: list[Statement],
    *,
    isolate: bool,
) -> list[Refusal]:
    """Plan ``projection``'s writes for ``fresh`` into ``writes`` (isolated: each event's
    written at once in its own savepoint); the events it refuses."""
    forgotten = [
        m.event.event for m in fresh if m.event and isinstance(m.event.event, CustomerForgotten)
    ]
    if forgotten:
        await projection.forget(conn, version, forgotten)
    events = [
        m.event
        for m in fresh
        if m.event is not None and not isinstance(m.event.event, CustomerForgotten)
    ]
    if not events:
        return []
    if not isolate:
        plan = await projection.plan(conn, version, events)
        writes += plan.writes
        return plan.refusals
    refused: list[Refusal] = []
    for event in events:
        refused += await _project_one(conn, projection, version, event)
    return refused


async def _project_one(
    conn: asyncpg.Connection, projection: Projection, version: int, event: StoredEvent
) -> list[Refusal]:
    try:
        async with conn.transaction():  # a savepoint: a failure undoes this event only
            return await projection.apply(conn, version, [event])
    except Exception as exc:
        if not is_poison_error(exc):
            raise
        return [Refusal(event, f"{type(exc).__name__}: {exc}")]


def _park_row(parked: _Parked) -> tuple[Any, ...]:
    m = parked.message
    return (
        parked.projection, parked.version, m.partition, m.sequence, m.subject, m.event_type,
        parked.error, json.dumps(dict(m.headers)), m.payload,
    )  # fmt: skip


def _park(parked: Sequence[_Parked]) -> Statement:
    columns = list(zip(*(_park_row(p) for p in parked), strict=True))
    return Statement(
        "INSERT INTO parked_events (projection, version, partition, sequence, subject, "
        "event_type, error, headers, payload) "
        "SELECT p, v, pt, s, sj, t, e, h::jsonb, b FROM unnest($1::text[], $2::int4[], "
        "$3::int4[], $4::int8[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bytea[]) "
        "AS u(p, v, pt, s, sj, t, e, h, b) ON CONFLICT DO NOTHING",
        tuple(list(c) for c in columns),
    )
