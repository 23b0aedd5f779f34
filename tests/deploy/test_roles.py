"""`checkout-orchestrator up --role R`: each role the deployments run starts on its own.

Against the suite's real NATS and Postgres, with this test's own stream names and database;
`--once` starts the role, reports and stops.
"""

from __future__ import annotations

import contextlib

import nats
import pytest
from typer.testing import CliRunner

from orchestrator.bootstrap import Endpoints
from orchestrator.cli import app
from orchestrator.cli.serve import Role, _serve
from orchestrator.jetstream.command_service import DURABLE
from orchestrator.settings import Settings
from tests.support.builders import layout_for


def role_settings(tmp_path, nats_url, database_url, layout) -> Settings:
    return Settings(
        nats_url=nats_url,
        database_url=database_url,
        data_dir=tmp_path,
        events_stream=layout.events_stream,
        events_prefix=layout.events_prefix,
        commands_stream=layout.commands_stream,
        commands_prefix=layout.commands_prefix,
        http_port=0,
    )


@pytest.fixture
async def cleanup_streams(nats_url, stream_names):
    yield
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for stream in (stream_names.stream, stream_names.commands_stream):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream)
    await nc.close()


@pytest.mark.parametrize("role", [Role.COMMANDS, Role.PROJECTORS, Role.API])
async def test_each_role_starts_alone_and_stops(
    role, tmp_path, nats_url, database_url, stream_names, cleanup_streams, capsys
):
    layout = layout_for(stream_names)
    settings = role_settings(tmp_path, nats_url, database_url, layout)
    endpoints = Endpoints(nats_url, database_url, embedded_nats=False, embedded_postgres=False)
    await _serve(settings, endpoints, once=True, sandbox=False, role=role)
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert f"up ({role.value})" in out
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(layout.events_stream)  # every role checks the streams
        assert info.config.allow_atomic is True
        consumers = {c.name for c in await js.consumers_info(layout.commands_stream)}
        assert (DURABLE in consumers) is (role is Role.COMMANDS), consumers
    finally:
        await nc.close()
    assert ("HTTP http://" in out) is (role is Role.API)


def test_sandbox_runs_with_all_roles_only():
    result = CliRunner().invoke(app, ["up", "--sandbox", "--role", "api"])
    assert result.exit_code == 2
    assert "--role all only" in result.output


def test_an_unknown_role_is_refused():
    result = CliRunner().invoke(app, ["up", "--role", "everything"])
    assert result.exit_code == 2
