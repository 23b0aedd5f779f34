"""Shared fixtures for the whole test-suite.

Servers: ``NATS_URL`` / ``DATABASE_URL`` in the environment point the suite at existing
servers; otherwise it starts its own from the pip-installed binaries (see
``orchestrator.embedded``), one of each per session: NATS in pytest's temporary directory,
PostgreSQL in a directory of its own under the system's temporary directory (see
`tests.support.servers.postgres_home`).
Tests that kill or restart a server use a private one (``nats_server``) and never the
shared one. Names (streams, subjects, databases) are unique per test, so tests never collide
on a shared server.

A parked projection event is an alarm (a hole in a read model): the ``database_url``
fixture fails the test that leaves one in its database, unless the test is marked
``parked_expected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from orchestrator.embedded import EmbeddedNats, EmbeddedPostgres
from tests.support.builders import StreamNames
from tests.support.capture import every_log_record  # noqa: F401 - a fixture for every test
from tests.support.servers import postgres_home

TEST_KEK = "dGVzdC1rZWstb2YtdGhlLXN1aXRlLW5ldmVyLXByb2Q="  # base64 of 32 bytes; tests only
"""The key-encryption key of the suite's databases (docs/privacy.md). A database's data
keys are wrapped by the KEK it first met, and the suite's databases serve many tests, so
every test process and every `up` the tests start uses this one (the environment)."""


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("CHECKOUT_PRIVACY_KEK", TEST_KEK)


# --- the event loop --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Cancel what a test left running on the session's loop.

    Tests share one event loop; a test that fails mid-way (or is stopped by pytest-timeout)
    can leave its background tasks (a load, a projector) running, and they would then slow
    or break every later test. Whatever a test started and did not finish is cancelled here.
    """
    before = asyncio.all_tasks()
    yield
    leaked = asyncio.all_tasks() - before - {asyncio.current_task()}
    leaked = {t for t in leaked if not t.done()}
    for task in leaked:
        task.cancel()
    if leaked:
        names = sorted(t.get_name() for t in leaked)
        logging.getLogger(__name__).warning("cancelled tasks the test left running: %s", names)
        await asyncio.wait(leaked, timeout=10)


# --- NATS -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the session's NATS (JetStream) server: ``$NATS_URL`` or an embedded one."""
    url = os.environ.get("NATS_URL")
    if url:
        yield url
        return
    with EmbeddedNats(tmp_path_factory.mktemp("nats")) as server:
        yield server.url


@pytest.fixture
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A fresh, private, started ``EmbeddedNats`` that the test may kill and restart."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats-private"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stream_names() -> StreamNames:
    return StreamNames.unique()


# --- Postgres ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of the session's Postgres server: ``$DATABASE_URL`` or an embedded one."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    # fsync=off only matters if the OS crashes; process kills (crash tests) lose nothing
    with (
        postgres_home("postgres") as home,
        EmbeddedPostgres(home, settings={"fsync": "off"}) as server,
    ):
        yield server.dsn


@pytest.fixture
def private_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL cluster of this test only, which it may stop, kill and restart."""
    with postgres_home("private") as home:
        server = EmbeddedPostgres(home, settings={"fsync": "off"})
        server.start()
        try:
            yield server
        finally:
            server.stop()


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


_PARKED = """
SELECT CASE WHEN to_regclass('parked_events') IS NULL THEN '{}'::text[] ELSE
    (SELECT coalesce(array_agg(format('%s #%s %s: %s', projection, sequence, event_type,
                                      left(error, 200)) ORDER BY id), '{}')
     FROM parked_events)
END
"""


async def _parked_in(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return list(await conn.fetchval(_PARKED))
    finally:
        await conn.close()


@pytest.fixture
async def database_url(postgres_dsn: str, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """DSN of a fresh, empty database on the session's server, dropped after the test;
    the test fails if it parked a projection event without the ``parked_expected`` mark."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield _with_database(postgres_dsn, name)
    try:
        parked = await _parked_in(_with_database(postgres_dsn, name))
    except (OSError, TimeoutError, asyncpg.PostgresError):
        parked = []  # the server is gone (a fault test): nothing left to check
    finally:
        await _drop_database(postgres_dsn, name)
    if parked and request.node.get_closest_marker("parked_expected") is None:
        pytest.fail(f"{len(parked)} projection event(s) parked: {parked[:5]}", pytrace=False)


async def _drop_database(postgres_dsn: str, name: str) -> None:
    with contextlib.suppress(Exception):  # best effort: the server may be gone
        conn = await asyncpg.connect(postgres_dsn, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
