"""Schema migrations: ``projections/migrations/NNN_name.sql``, applied in order, each once.

Guarantees: every migration runs in its own transaction together with its row in
``schema_migrations``, so it is applied entirely or not at all. Concurrent callers
(several workers starting at once) serialise on a session-level advisory lock: the
second finds the work done. A migration that was applied is never edited; a change is a
new file with the next number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from projections.errors import MigrationError
from projections.keys import MIGRATIONS_LOCK

__all__ = ["Migration", "available_migrations", "migrate"]

_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name        text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    sql: str


def available_migrations(package: str = "projections") -> list[Migration]:
    """The migrations shipped in ``package``'s ``migrations`` folder, in order of number.

    Another package's migrations are named ``<package>.<NNN_name>`` so numbers never clash.
    """
    folder = resources.files(package) / "migrations"
    prefix = "" if package == "projections" else f"{package}."
    found = [
        Migration(prefix + entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if _NAME.match(entry.name)
    ]
    return sorted(found, key=lambda migration: migration.name)


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    try:
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", migration.name)
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"migration {migration.name} failed: {exc}") from exc


async def migrate(dsn: str, *, also: tuple[str, ...] = (), until: str | None = None) -> list[str]:
    """Apply the migrations not applied yet; return their names (empty when up to date).

    ``also`` names further packages whose ``migrations`` folders are applied after ours
    (the orchestrator's webhook inbox lives in the same database). ``until`` stops after
    the migration of that name (tests of a migration over an older schema use it).
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1, $2)", *MIGRATIONS_LOCK)
        try:
            await conn.execute(_CREATE_TABLE)
            done = {row["name"] for row in await conn.fetch("SELECT name FROM schema_migrations")}
            applied: list[str] = []
            pending = [
                m for package in ("projections", *also) for m in available_migrations(package)
            ]
            if until is not None:
                pending = pending[: [m.name for m in pending].index(until) + 1]
            for migration in pending:
                if migration.name not in done:
                    await _apply(conn, migration)
                    applied.append(migration.name)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1, $2)", *MIGRATIONS_LOCK)
    finally:
        await conn.close()
