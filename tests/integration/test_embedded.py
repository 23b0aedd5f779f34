"""The embedded servers really start, answer, survive kill + restart, and report their versions."""

from __future__ import annotations

import getpass
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.aio.client import Client
from nats.js.api import StorageType

from orchestrator.embedded import (
    EmbeddedNats,
    EmbeddedPostgres,
    EmbeddedServerError,
    find_nats_server,
    free_port,
)
from tests.support.servers import postgres_home

# --- NATS -------------------------------------------------------------------------------------


@pytest.fixture
async def nats_client(nats_url: str) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_url, connect_timeout=5)
    try:
        yield nc
    finally:
        await nc.close()


async def test_jetstream_add_publish_read(nats_client: Client, stream_names) -> None:
    js = nats_client.jetstream()
    await js.add_stream(
        name=stream_names.stream,
        subjects=[f"{stream_names.events_prefix}.>"],
        storage=StorageType.FILE,
    )
    try:
        ack = await js.publish(f"{stream_names.events_prefix}.s1", b"hello")
        assert ack.stream == stream_names.stream
        msg = await js.get_msg(stream_names.stream, ack.seq)
        assert msg.data == b"hello"
        assert msg.subject == f"{stream_names.events_prefix}.s1"
    finally:
        await js.delete_stream(stream_names.stream)


def test_binary_is_the_wheels_not_debians() -> None:
    binary = find_nats_server()
    assert binary != Path("/usr/sbin/nats-server")
    assert binary.name == "nats-server"


async def test_version_is_at_least_2_12(nats_server: EmbeddedNats) -> None:
    assert nats_server.server_version is not None
    major, minor, *_ = (int(part) for part in nats_server.server_version.split("."))
    assert (major, minor) >= (2, 12)
    nc = await nats.connect(nats_server.url, connect_timeout=5)
    try:
        version = nc.connected_server_version
        assert (version.major, version.minor) >= (2, 12)
        info = await nc.jetstream().account_info()
        assert info.limits is not None
    finally:
        await nc.close()


@pytest.mark.slow
async def test_kill_then_restart_keeps_file_stored_messages(
    nats_server: EmbeddedNats, stream_names
) -> None:
    url_before = nats_server.url
    nc = await nats.connect(nats_server.url, connect_timeout=5)
    try:
        js = nc.jetstream()
        await js.add_stream(
            name=stream_names.stream,
            subjects=[f"{stream_names.events_prefix}.>"],
            storage=StorageType.FILE,
        )
        for i in range(20):
            await js.publish(f"{stream_names.events_prefix}.s{i}", f"m{i}".encode())
    finally:
        await nc.close()

    nats_server.kill()
    assert not nats_server.is_running()
    assert (nats_server.store_dir / "$G" / "streams" / stream_names.stream).is_dir()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", nats_server.port), 1).close()
    nats_server.restart()
    assert nats_server.is_running()
    assert nats_server.url == url_before

    nc = await nats.connect(nats_server.url, connect_timeout=5)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream_names.stream)
        assert info.state.messages == 20
        last = await js.get_msg(stream_names.stream, 20)
        assert last.data == b"m19"
    finally:
        await nc.close()


def test_sync_interval_is_written_and_accepted(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path, sync_interval="always") as server:
        assert 'sync_interval: "always"' in server.config_path.read_text()
        assert server.is_running()
    assert not server.is_running()
    assert "sync_interval:" not in EmbeddedNats(tmp_path / "default").config_text()


def test_start_failure_reports_log_tail(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        server = EmbeddedNats(tmp_path, port=blocker.getsockname()[1], start_timeout=10)
        with pytest.raises(EmbeddedServerError, match=r"nats\.log"):
            server.start()
        assert not server.is_running()


def test_start_and_stop_are_idempotent(nats_server: EmbeddedNats) -> None:
    pid = nats_server.pid
    nats_server.start()
    assert nats_server.pid == pid
    nats_server.stop()
    nats_server.stop()
    assert nats_server.pid is None


# --- Postgres ---------------------------------------------------------------------------------


@pytest.fixture
def postgres() -> Iterator[EmbeddedPostgres]:
    """A private embedded cluster (this module kills it; never the session's)."""
    with postgres_home("pg") as home, EmbeddedPostgres(home) as server:
        yield server


async def test_postgres_is_18(postgres: EmbeddedPostgres) -> None:
    assert postgres.dsn == f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres"
    conn = await asyncpg.connect(postgres.dsn)
    try:
        version = await conn.fetchval("select version()")
        assert version.startswith("PostgreSQL 18")
        assert await conn.fetchval("select current_setting('server_version_num')::int") >= 180000
        assert await conn.fetchval("select current_user") == "postgres"
    finally:
        await conn.close()


async def test_create_database(postgres: EmbeddedPostgres) -> None:
    dsn = postgres.create_database("orders_test")
    assert dsn == postgres.dsn_for("orders_test")
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("select current_database()") == "orders_test"
        assert await conn.fetchval("show server_encoding") == "UTF8"
    finally:
        await conn.close()
    assert postgres.create_database("orders_test", exist_ok=True) == dsn
    with pytest.raises(EmbeddedServerError, match="already exists"):
        postgres.create_database("orders_test")
    with pytest.raises(ValueError, match="database name"):
        postgres.create_database('bad"name')
    postgres.drop_database("orders_test")
    assert postgres.create_database("orders_test") == dsn


@pytest.mark.slow
async def test_postgres_kill_then_restart(postgres: EmbeddedPostgres) -> None:
    dsn = postgres.create_database("crash")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("create table t (x int); insert into t values (1), (2)")
    finally:
        await conn.close()

    idle = await asyncpg.connect(dsn)  # a backend alive at the time of the crash
    try:
        postgres.kill()
        assert not postgres.is_running()
        assert (postgres.data_dir / "postmaster.pid").exists()  # stale, as after a real crash
    finally:
        idle.terminate()

    postgres.start()
    assert postgres.is_running()
    assert postgres.dsn_for("crash") == dsn
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("select sum(x) from t") == 3
    finally:
        await conn.close()

    postgres.kill()
    postgres.restart()
    assert postgres.is_running()


async def _answers_after_a_checkpoint(server: EmbeddedPostgres) -> bool:
    """CHECKPOINT opens global/pg_control: where the PANIC of the dying cluster came from."""
    try:
        conn = await asyncpg.connect(server.dsn, timeout=10)
    except OSError:
        return False
    try:
        await conn.execute("CHECKPOINT")
        return bool(await conn.fetchval("select 1") == 1)
    except asyncpg.PostgresError:
        return False
    except asyncpg.exceptions.ConnectionDoesNotExistError:
        return False
    finally:
        await conn.close()


async def test_a_cluster_lives_outside_the_directory_pytest_secures(
    postgres: EmbeddedPostgres,
) -> None:
    # every pytest session that starts as root chmods /tmp/pytest-of-root to 0700; a cluster
    # below it (Postgres runs as its own user) then loses its data directory. What securing
    # an ancestor does, shown on a directory of this test's own (never on a shared one):
    with postgres_home("secured") as secured:
        doomed = EmbeddedPostgres(secured / "cluster")
        doomed.start()
        try:
            assert await _answers_after_a_checkpoint(doomed)
            secured.chmod(0o700)
            assert not await _answers_after_a_checkpoint(doomed)
        finally:
            secured.chmod(0o755)
            doomed.kill()  # what the PANIC left of it
    # ... and the suite's clusters are nowhere below pytest's root, so they keep answering
    pytest_root = Path(tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}"
    assert not postgres.base_dir.resolve().is_relative_to(pytest_root.resolve())
    assert await _answers_after_a_checkpoint(postgres)


def test_postgres_start_is_idempotent_and_adopts_running() -> None:
    with postgres_home("adopt") as tmp_path, EmbeddedPostgres(tmp_path) as first:
        pid = first.pid
        first.start()
        assert first.pid == pid
        second = EmbeddedPostgres(tmp_path)  # same cluster, another picked port
        second.start()
        assert second.port == first.port
        assert second.pid == pid
        with pytest.raises(EmbeddedServerError, match="already running"):
            EmbeddedPostgres(tmp_path, port=free_port()).start()
    assert not first.is_running()
    first.stop()


# --- fixtures from conftest -------------------------------------------------------------------


async def test_database_url_is_a_fresh_database(database_url: str, postgres_dsn: str) -> None:
    assert database_url != postgres_dsn
    conn = await asyncpg.connect(database_url)
    try:
        name = await conn.fetchval("select current_database()")
        assert name.startswith("test_")
        tables = await conn.fetchval(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        )
        assert tables == 0
    finally:
        await conn.close()


def test_stream_names_are_unique(stream_names) -> None:
    assert stream_names.stream.startswith("T_")
    assert stream_names.commands_stream.startswith("C_")
    assert stream_names.events_prefix.endswith(".events")
    assert stream_names.commands_prefix.endswith(".commands")
    assert stream_names.stream[2:] == stream_names.commands_stream[2:]
