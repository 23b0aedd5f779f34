"""The queries over the read models, with read-your-writes; the HTTP API is a thin skin on it.

Every query reads the stable views (``checkout_sessions``, ``session_timeline``,
``routing_decisions``, ``provider_daily_totals``), which a rebuild re-points atomically.

Read-your-writes: a session query given ``min_sequence`` (the stream sequence a command
reply carried) first waits until the checkpoint of the answering projection, for that
session's partition, has reached it; it polls with a short backoff and gives up after
``wait_timeout`` with `ConsistencyTimeout`. The sequence of any event of the session
is in that partition, so reaching it means the event is in the rows read next.

``as_of`` folds the session's events up to the instant from the timeline read model
with the projection's own `projections.fold.apply`: the state it returns is the one the
sessions read model held right after the last event at or before that instant.

Lists are keyset-paginated on ``(created_at, session_id)`` descending; the cursor is
opaque (base64url JSON) and carries no filter, so a client must repeat its filters.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg
import msgspec

from events.subjects import SESSION_ID_PATTERN, partition_of
from events.values import Provider, SessionStatus
from projections.decoding import Envelope, StoredEvent, decode_payload
from projections.errors import (
    ConsistencyTimeout,
    InvalidQuery,
    QueryUnavailable,
    SessionNotFound,
)
from projections.fold import fold
from projections.read_models.sessions import state_from_row
from projections.schemas import (
    CheckoutSession,
    ProviderStats,
    ProviderTotal,
    RoutingDecision,
    SessionPage,
    TimelineEvent,
)
from projections.watch import CommitWatch

__all__ = ["MAX_PAGE", "ReadModels", "SessionFilters"]

MAX_PAGE = 500
MAX_STATS_DAYS = 400
_POLL_FIRST = 0.002
_POLL_MAX = 0.05

# The database is down, restarting or cut us off: the query may succeed if retried later.
_UNAVAILABLE = (
    OSError,  # refused, reset (the server is stopped)
    TimeoutError,  # connecting took too long
    asyncpg.PostgresConnectionError,  # the connection broke or does not exist any more
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)

_CHECKPOINT = """
SELECT c.position FROM projection_checkpoints c
JOIN projection_versions v ON v.projection = c.projection AND v.active_version = c.version
WHERE c.projection = $1 AND c.partition = $2
"""


@dataclass(frozen=True, slots=True)
class SessionFilters:
    status: SessionStatus | None = None
    provider: Provider | None = None
    currency: str | None = None
    customer_email: str | None = None
    created_from: datetime | None = None
    """inclusive"""
    created_to: datetime | None = None
    """exclusive"""

    def where(self) -> tuple[list[str], list[Any]]:
        """SQL conditions and their parameters ($1...)."""
        wanted = {
            "status": self.status.value if self.status else None,
            "provider": self.provider.value if self.provider else None,
            "currency": self.currency.upper() if self.currency else None,
            "customer_email": self.customer_email,
        }
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in wanted.items():
            if value is not None:
                params.append(value)
                clauses.append(f"{column} = ${len(params)}")
        if self.created_from is not None:
            params.append(self.created_from)
            clauses.append(f"created_at >= ${len(params)}")
        if self.created_to is not None:
            params.append(self.created_to)
            clauses.append(f"created_at < ${len(params)}")
        return clauses, params


def _encode_cursor(created_at: datetime, session_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), session_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, session_id = json.loads(raw)
        return datetime.fromisoformat(created), str(session_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidQuery("cursor is not one this API returned", field="cursor") from exc


def _checked_id(session_id: str) -> str:
    if not SESSION_ID_PATTERN.match(session_id):
        raise SessionNotFound(session_id)
    return session_id


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _timeline_event(row: Mapping[str, Any]) -> TimelineEvent:
    return TimelineEvent.model_validate({**dict(row), "payload": _json(row["payload"])})


def _recorded(event: TimelineEvent) -> StoredEvent:
    """A timeline row back into the event it stores (payload is in the current schema)."""
    payload = msgspec.json.encode(event.payload)
    return StoredEvent(decode_payload(payload), Envelope.of(event), event.sequence, "", payload)


def _routing(row: Mapping[str, Any]) -> RoutingDecision:
    return RoutingDecision.model_validate(
        {**dict(row), "candidates": _json(row["candidates"]), "dropped": _json(row["dropped"])}
    )


class ReadModels:
    """The queries, on a pool the composition root owns."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        partitions: int,
        wait_timeout: float = 5.0,
        watch: CommitWatch | None = None,
    ) -> None:
        self._pool = pool
        self._partitions = partitions
        self._wait_timeout = wait_timeout
        self._watch = watch

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; losing the database becomes `QueryUnavailable` (503)."""
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise QueryUnavailable(
                f"the read models' database is unavailable ({type(exc).__name__}); retry later"
            ) from exc

    # -- read-your-writes -------------------------------------------------------------

    async def _position(self, projection: str, partition: int) -> int:
        async with self._connection() as conn:
            found = await conn.fetchval(_CHECKPOINT, projection, partition)
        return int(found or 0)

    async def wait_for(self, projection: str, session_id: str, min_sequence: int | None) -> None:
        """Return once ``projection`` applied ``min_sequence`` in the session's partition."""
        if not min_sequence:
            return
        partition = partition_of(session_id, self._partitions)
        deadline = time.monotonic() + self._wait_timeout
        delay = _POLL_FIRST
        while (position := await self._position(projection, partition)) < min_sequence:
            if time.monotonic() >= deadline:
                raise ConsistencyTimeout(
                    f"the {projection} read model reached sequence {position} of partition "
                    f"{partition}, not {min_sequence}, within {self._wait_timeout:g} s",
                    projection=projection,
                    partition=partition,
                    position=position,
                    min_sequence=min_sequence,
                )
            remaining = deadline - time.monotonic()
            if self._watch is not None and self._watch.listening:
                await self._watch.wait(projection, partition, min_sequence, min(remaining, 0.1))
            else:
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, _POLL_MAX)

    # -- sessions ---------------------------------------------------------------------

    async def session(self, session_id: str, *, min_sequence: int | None = None) -> CheckoutSession:
        await self.wait_for("sessions", _checked_id(session_id), min_sequence)
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM checkout_sessions WHERE session_id = $1", session_id
            )
        if row is None:
            raise SessionNotFound(session_id)
        return CheckoutSession.from_state(state_from_row(row))

    async def session_id_for_provider_reference(
        self, provider: str, provider_session_id: str
    ) -> str | None:
        """Our session that opened ``provider_session_id`` at ``provider``; None if none did.

        Filled from provider_session_opened events, so it holds without any metadata of
        ours echoed by the provider (migration 004 indexes it).
        """
        async with self._connection() as conn:
            found: str | None = await conn.fetchval(
                "SELECT session_id FROM checkout_sessions"
                " WHERE provider = $1 AND provider_session_id = $2"
                " ORDER BY created_at DESC LIMIT 1",
                provider,
                provider_session_id,
            )
        return found

    async def session_as_of(
        self, session_id: str, as_of: datetime, *, min_sequence: int | None = None
    ) -> CheckoutSession:
        if as_of.tzinfo is None:
            raise InvalidQuery("as_of must carry a time zone", field="as_of")
        events = await self.events(session_id, min_sequence=min_sequence, until=as_of)
        state = fold(_recorded(event) for event in events)
        if state is None:
            raise SessionNotFound(session_id, f"no checkout session {session_id} at {as_of}")
        return CheckoutSession.from_state(state)

    async def sessions(
        self, filters: SessionFilters, *, limit: int = 50, cursor: str | None = None
    ) -> SessionPage:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidQuery(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        clauses, params = filters.where()
        if cursor:
            created_at, session_id = _decode_cursor(cursor)
            params += [created_at, session_id]
            clauses.append(f"(created_at, session_id) < (${len(params) - 1}, ${len(params)})")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(limit + 1)
        query = (
            f"SELECT * FROM checkout_sessions {where} "  # noqa: S608 - clauses are ours
            f"ORDER BY created_at DESC, session_id DESC LIMIT ${len(params)}"
        )
        async with self._connection() as conn:
            rows = await conn.fetch(query, *params)
        page = [CheckoutSession.from_state(state_from_row(row)) for row in rows[:limit]]
        more = len(rows) > limit
        next_cursor = _encode_cursor(page[-1].created_at, page[-1].id) if more else None
        return SessionPage(data=page, next_cursor=next_cursor)

    # -- timeline and routing ---------------------------------------------------------

    async def events(
        self,
        session_id: str,
        *,
        min_sequence: int | None = None,
        until: datetime | None = None,
    ) -> list[TimelineEvent]:
        await self.wait_for("timeline", _checked_id(session_id), min_sequence)
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT * FROM session_timeline WHERE session_id = $1 "
                "AND ($2::timestamptz IS NULL OR occurred_at <= $2) ORDER BY sequence",
                session_id,
                until,
            )
            if not rows and until is None:
                raise SessionNotFound(session_id)
        return [_timeline_event(row) for row in rows]

    async def routing(
        self, session_id: str, *, min_sequence: int | None = None
    ) -> list[RoutingDecision]:
        await self.wait_for("routing", _checked_id(session_id), min_sequence)
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT * FROM routing_decisions WHERE session_id = $1 ORDER BY sequence",
                session_id,
            )
            known = rows or await conn.fetchval(
                "SELECT true FROM session_timeline WHERE session_id = $1 LIMIT 1", session_id
            )
        if not known:
            raise SessionNotFound(session_id)
        return [_routing(row) for row in rows]

    # -- totals -----------------------------------------------------------------------

    async def provider_stats(
        self, start: date, end: date, *, by_day: bool = False
    ) -> ProviderStats:
        if end < start:
            raise InvalidQuery("`to` is before `from`", field="to")
        if (end - start).days > MAX_STATS_DAYS:
            raise InvalidQuery(f"at most {MAX_STATS_DAYS} days per query", field="to")
        keys = "day, provider, currency, status" if by_day else "provider, currency, status"
        query = (
            f"SELECT {keys}, sum(sessions)::int8 AS sessions, sum(amount)::int8 AS amount "  # noqa: S608
            f"FROM provider_daily_totals WHERE day BETWEEN $1 AND $2 GROUP BY {keys} "
            f"HAVING sum(sessions) <> 0 OR sum(amount) <> 0 ORDER BY {keys}"
        )
        async with self._connection() as conn:
            rows = await conn.fetch(query, start, end)
        data = [
            ProviderTotal.model_validate({**dict(row), "provider": row["provider"] or None})
            for row in rows
        ]
        return ProviderStats(start=start, end=end, data=data)
