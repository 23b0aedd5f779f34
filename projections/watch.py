"""`CommitWatch`: wakes read-your-writes waiters as soon as a projection commits.

Every batch transaction sends ``NOTIFY projection_commits`` with its new checkpoints
(`projections.checkpoints.advance`); Postgres delivers it when the transaction commits.
The watch listens on one dedicated connection and resolves the waiters of a
(projection, partition) whose wanted sequence a notice reached. A notice is only a hint:
`ReadModels.wait_for` always re-reads the active version's checkpoint, and falls back to
polling if a notice is missed (it registers after its first check) or the connection is
lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

import asyncpg

from projections.checkpoints import COMMITS_CHANNEL, parse_commit_notice

__all__ = ["CommitWatch"]

_Key = tuple[str, int]


class CommitWatch:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._waiters: dict[_Key, list[tuple[int, asyncio.Future[None]]]] = defaultdict(list)

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def start(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        await conn.add_listener(COMMITS_CHANNEL, self._notice)
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            await conn.close()
        for waiters in self._waiters.values():
            for _, future in waiters:
                future.cancel()
        self._waiters.clear()

    def _notice(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        for name, _version, partition, position in parse_commit_notice(str(payload)):
            waiters = self._waiters.get((name, partition))
            if not waiters:
                continue
            for wanted, future in waiters:
                if wanted <= position and not future.done():
                    future.set_result(None)

    async def wait(self, projection: str, partition: int, sequence: int, timeout: float) -> None:
        """Return when a commit of ``projection`` reached ``sequence`` in ``partition``, or
        after ``timeout`` seconds, whichever comes first (never raises on timeout)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (sequence, future)
        waiters = self._waiters[(projection, partition)]
        waiters.append(entry)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await future
        finally:
            waiters.remove(entry)
            if not waiters:
                self._waiters.pop((projection, partition), None)
