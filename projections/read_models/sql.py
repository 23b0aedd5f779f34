"""Set-based SQL helpers shared by the read models: one ``unnest`` statement per write.

A read model plans its writes as `Statement`s; the batch sends the writes of all four,
the parked events and the checkpoints as one statement (`fused`: each write a
data-modifying CTE), one round trip whatever the batch holds. The parts of a fused
statement see the same snapshot and write different tables, so their order does not
matter; a data or constraint error in any of them fails the whole statement.

Table names are never user input: they are a fixed base name plus an integer version.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from projections.decoding import CustomerForgotten

__all__ = [
    "Column",
    "Statement",
    "blank_forgotten",
    "dumps",
    "fused",
    "run",
    "table",
    "unnest_insert",
]

_encode = msgspec.json.Encoder().encode


def table(base: str, version: int) -> str:
    if not base.isidentifier() or version < 1:
        raise ValueError(f"bad read-model table {base!r} v{version}")
    return f"rm_{base}_v{int(version)}"


def dumps(value: Any) -> str:
    """Compact JSON text for a ``jsonb`` parameter (msgspec: a fifth of `json.dumps`' cost)."""
    return _encode(value).decode()


class Column:
    """A column written from a Postgres array parameter: name, array type, cast on select."""

    __slots__ = ("array_type", "name", "select")

    def __init__(self, name: str, pg_type: str) -> None:
        self.name = name
        # jsonb travels as text (no connection-level codec needed) and is cast once in SQL
        self.array_type = "text[]" if pg_type == "jsonb" else f"{pg_type}[]"
        self.select = f"u.{name}::jsonb" if pg_type == "jsonb" else f"u.{name}"


def unnest_insert(target: str, columns: Sequence[Column], conflict: str) -> str:
    """``INSERT INTO target (...) SELECT ... FROM unnest($1, $2, ...) u ... <conflict>``."""
    names = ", ".join(c.name for c in columns)
    params = ", ".join(f"${i}::{c.array_type}" for i, c in enumerate(columns, start=1))
    selects = ", ".join(c.select for c in columns)
    # identifiers come from code, values are parameters
    head = f"INSERT INTO {target} ({names}) SELECT {selects} "
    return head + f"FROM unnest({params}) AS u({names}) {conflict}"


async def blank_forgotten(
    conn: asyncpg.Connection, statement: str, forgotten: Sequence[CustomerForgotten]
) -> None:
    """Run a read model's blanking ``statement`` ($1 subject, $2 its sessions, $3 the
    personal metadata keys) for each forgotten subject."""
    for event in forgotten:
        await conn.execute(
            statement, event.subject, list(event.sessions), list(event.metadata_keys)
        )


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    args: tuple[Any, ...] = ()


_PARAMETER = re.compile(r"\$(\d+)")


@functools.lru_cache(maxsize=256)
def _shifted(sql: str, offset: int) -> str:
    """``sql`` with its parameters ``$n`` renumbered ``$(n + offset)``."""
    return _PARAMETER.sub(lambda m: f"${int(m.group(1)) + offset}", sql) if offset else sql


def fused(writes: Sequence[Statement], then: Statement | None = None) -> Statement:
    """``writes`` (INSERT / UPDATE / DELETE statements) as one statement, each a
    data-modifying CTE, ending with the query ``then`` (which may start with ``WITH``)."""
    parts: list[str] = []
    args: list[Any] = []
    for index, write in enumerate(writes):
        parts.append(f"w{index} AS ({_shifted(write.sql, len(args))})")
        args += write.args
    tail = _shifted(then.sql, len(args)).lstrip() if then is not None else "SELECT NULL"
    if then is not None:
        args += then.args
    if not parts:
        return Statement(tail, tuple(args))
    if tail.startswith("WITH "):
        return Statement(f"WITH {', '.join(parts)}, {tail[5:]}", tuple(args))
    return Statement(f"WITH {', '.join(parts)} {tail}", tuple(args))


async def run(conn: asyncpg.Connection, writes: Sequence[Statement]) -> None:
    """Send ``writes`` in one round trip."""
    if writes:
        statement = fused(writes)
        await conn.execute(statement.sql, *statement.args)
