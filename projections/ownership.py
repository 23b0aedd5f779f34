"""Partition ownership: one projector per partition at a time, by Postgres advisory locks.

Each worker of a projector (say ``live``) keeps one dedicated connection holding:
- a shared presence lock ``presence_key(projector)``: counting its holders tells how many
  workers are alive, hence each one's fair share ``ceil(partitions / workers)``;
- one exclusive session lock ``owner_key(projector, p)`` per partition it owns.

A lock lives exactly as long as the connection: a worker that dies (even by SIGKILL)
loses its partitions at once, and the others take them at their next claim. Ownership
is an optimisation, not the safety net: the batch transaction row-locks the checkpoint,
so even two owners (a connection lost while its batch commits) never apply twice.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import asyncpg

from projections.keys import owner_key, presence_key

__all__ = ["Ownership", "fair_share", "owners"]

_LOCKS = (
    "SELECT objid::bigint AS partition, pid FROM pg_locks "
    "WHERE locktype = 'advisory' AND objsubid = 2 AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid::bigint = $1"
)


def _unsigned(value: int) -> int:
    """pg_locks shows the int4 key as an oid: the same 32 bits, unsigned."""
    return value & 0xFFFFFFFF


def fair_share(partitions: int, workers: int) -> int:
    return math.ceil(partitions / max(1, workers))


async def owners(conn: asyncpg.Connection, projector: str) -> dict[int, list[int]]:
    """partition -> backend pids holding its owner lock (one, when all is well)."""
    rows = await conn.fetch(_LOCKS, _unsigned(owner_key(projector, 0)[0]))
    found: dict[int, list[int]] = {}
    for row in rows:
        found.setdefault(int(row["partition"]), []).append(int(row["pid"]))
    return found


class Ownership:
    """One worker's leases, on its own connection (see module doc)."""

    def __init__(self, dsn: str, projector: str) -> None:
        self._dsn = dsn
        self._projector = projector
        self._conn: asyncpg.Connection | None = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def open(self) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=10)
        await conn.execute("SELECT pg_advisory_lock_shared($1, $2)", *presence_key(self._projector))
        self._conn = conn

    async def close(self) -> None:
        """Close the connection: Postgres releases every lock it held."""
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await conn.close(timeout=5)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                asyncpg.InternalClientError):  # fmt: skip
            conn.terminate()  # a broken connection (the server crashed): just drop it

    def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            raise asyncpg.exceptions.ConnectionDoesNotExistError("ownership connection is closed")
        return self._conn

    async def workers(self) -> int:
        """How many workers of this projector are alive (holders of the presence lock)."""
        presence = _unsigned(presence_key(self._projector)[0])
        rows = await self._connection().fetch(_LOCKS, presence)
        return max(1, len(rows))

    async def claim(self, candidates: Sequence[int], limit: int) -> list[int]:
        """Try to lock up to ``limit`` of ``candidates``; return the ones now owned."""
        if limit <= 0 or not candidates:
            return []
        conn = self._connection()
        got: list[int] = []
        for partition in random.sample(list(candidates), len(candidates)):
            key = owner_key(self._projector, partition)
            if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *key):
                got.append(partition)
                if len(got) >= limit:
                    break
        return got

    async def release(self, partition: int) -> None:
        await self._connection().execute(
            "SELECT pg_advisory_unlock($1, $2)", *owner_key(self._projector, partition)
        )
