"""Capturing everything a run leaves behind, for the scans of the leak and erasure tests:
every log record (DEBUG, every logger), every message stored in a stream, every row of
every table of a database."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import asyncpg
import nats.js.errors
import pytest

from orchestrator.bootstrap import connect_nats

__all__ = ["LogCapture", "database_dump", "every_log_record", "stored_messages"]


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record) + repr(record.__dict__.get("extra", "")))
        except Exception as exc:  # a record that cannot format is still evidence
            self.lines.append(f"{record.name} {record.msg!r} {record.args!r} ({exc!r})")


@pytest.fixture
def every_log_record() -> Iterator[LogCapture]:
    handler = LogCapture()
    root = logging.getLogger()
    loggers = [root] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    old_level = root.level
    root.setLevel(logging.DEBUG)
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        root.setLevel(old_level)


async def stored_messages(nats_url: str, stream: str) -> list[str]:
    """Every message the stream holds (subject, headers, payload), as text; a work queue's
    acknowledged messages are gone and skipped."""
    nc = await connect_nats(nats_url, "leak-scan")
    try:
        js = nc.jetstream()
        last = (await js.stream_info(stream)).state.last_seq
        stored = []
        for seq in range(1, last + 1):
            try:
                msg = await js.get_msg(stream, seq)
            except nats.js.errors.NotFoundError:
                continue
            data = (msg.data or b"").decode("utf-8", errors="replace")
            stored.append(f"{msg.subject} {msg.headers!r} {data}")
        return stored
    finally:
        await nc.drain()


async def database_dump(dsn: str) -> list[str]:
    """Every row of every table of the database (all schemas but the system's), as text;
    ``bytea`` columns as their bytes (``encode(..., 'escape')``), not hex, so text in them
    is found."""
    conn = await asyncpg.connect(dsn)
    try:
        columns = await conn.fetch(
            "SELECT quote_ident(c.table_schema) || '.' || quote_ident(c.table_name) AS tbl, "
            "quote_ident(c.column_name) AS col, c.data_type "
            "FROM information_schema.columns c JOIN information_schema.tables t "
            "USING (table_schema, table_name) WHERE t.table_type = 'BASE TABLE' "
            "AND c.table_schema NOT IN ('pg_catalog', 'information_schema') "
            "ORDER BY c.table_schema, c.table_name, c.ordinal_position"
        )
        tables: dict[str, list[str]] = {}
        for c in columns:
            text = (
                f"encode({c['col']}, 'escape')"
                if c["data_type"] == "bytea"
                else f"{c['col']}::text"
            )
            tables.setdefault(c["tbl"], []).append(f"coalesce({text}, '')")
        dump = []
        for table, parts in tables.items():
            rows = await conn.fetch(
                f"SELECT concat_ws(' | ', {', '.join(parts)}) AS row FROM {table}"  # noqa: S608
            )
            dump += [f"{table} {r['row']}" for r in rows]
        return dump
    finally:
        await conn.close()
