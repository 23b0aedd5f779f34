"""The read side as `up` runs it (real HTTP on a port) and the projections CLI commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.bootstrap import Endpoints, read_side
from orchestrator.settings import Settings
from projections.client import QueryClient
from tests.support.projections import projection_env

CLI = str(Path(sys.executable).parent / "checkout-orchestrator")


@pytest.fixture
async def env(nats_url, database_url, stream_names):
    async with projection_env(nats_url, database_url, stream_names) as environment:
        yield environment


def _settings(env) -> Settings:
    layout = env.layout
    return Settings(
        events_stream=layout.events_stream,
        events_prefix=layout.events_prefix,
        commands_stream=layout.commands_stream,
        commands_prefix=layout.commands_prefix,
        partitions=layout.partitions,
        http_port=0,
        projector_claim_interval=0.2,
    )


def _cli(env, tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    layout = env.layout
    environment = {
        **os.environ,
        "NATS_URL": env.nats_url,
        "DATABASE_URL": env.dsn,
        "CHECKOUT_EVENTS_STREAM": layout.events_stream,
        "CHECKOUT_EVENTS_PREFIX": layout.events_prefix,
        "CHECKOUT_COMMANDS_STREAM": layout.commands_stream,
        "CHECKOUT_COMMANDS_PREFIX": layout.commands_prefix,
        "CHECKOUT_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [CLI, *args], env=environment, capture_output=True, text=True, timeout=120, check=False
    )


async def test_read_side_serves_queries_over_http_while_projecting(env):
    sid = "http_session_1"
    endpoints = Endpoints(env.nats_url, env.dsn, embedded_nats=False, embedded_postgres=False)
    async with read_side(_settings(env), endpoints) as side:
        assert side.http_url is not None
        sequence = await env.load_one(sid)
        async with QueryClient(side.http_url) as reads:
            session = await reads.session(sid, min_sequence=sequence)
            events = await reads.events(sid)
    assert session.last_sequence == sequence
    assert events[-1].sequence == sequence


async def test_cli_migrate_status_and_rebuild(env, tmp_path):
    await env.load(30, seed=4)
    async with env.projector():
        await env.wait_caught_up()
        migrated = _cli(env, tmp_path, "migrate")  # the orchestrator's inbox table is new
        again = _cli(env, tmp_path, "migrate")
        status = _cli(env, tmp_path, "projections", "status")
        rebuilt = _cli(env, tmp_path, "projections", "rebuild", "sessions")
        unknown = _cli(env, tmp_path, "projections", "rebuild", "nope")
        await env.wait_caught_up()
    assert migrated.returncode == 0, migrated.stderr
    assert "orchestrator.001_webhook_inbox" in migrated.stdout
    assert "up to date" in again.stdout
    assert status.returncode == 0, status.stderr
    assert "sessions" in status.stdout
    assert "total lag: 0 event(s)" in status.stdout
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "version 1 -> 2" in rebuilt.stdout
    assert unknown.returncode == 2
    assert "no projection" in unknown.stdout
    assert (await env.actual()).sessions == (await env.expected()).sessions
