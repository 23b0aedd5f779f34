"""Routing backtests over real read models, in Python and through the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.routing.backtest_report import backtest_json
from orchestrator.services.backtesting import run_backtest
from projections.queries import ReadModels, SessionFilters
from tests.support.projections import projection_env
from tests.unit.test_routing_backtest import DEFAULT_TEXT, POLAR_FIRST

SESSIONS = 60


@pytest.fixture
async def loaded(nats_url, database_url, stream_names):
    async with projection_env(nats_url, database_url, stream_names) as env:
        await env.load(SESSIONS, seed=5)
        async with env.projector():
            await env.wait_caught_up()
        yield env


async def test_a_backtest_replays_every_recorded_checkout_beside_its_outcomes(loaded):
    reads = ReadModels(loaded.pool, partitions=loaded.layout.partitions)
    report = await run_backtest(reads, POLAR_FIRST)
    sessions = (await reads.sessions(SessionFilters(), limit=500)).data
    assert report.replayed == len(sessions) == SESSIONS
    recorded = Counter((s.provider, s.status.value) for s in sessions)
    for provider, outcome in report.outcomes.items():
        name = provider.value if provider else None
        assert outcome.paid == recorded[(name, "complete")]
        assert outcome.expired == recorded[(name, "expired")]
        assert outcome.failed == recorded[(name, "failed")]
    assert sum(o.sessions for o in report.outcomes.values()) == SESSIONS
    assert sum(report.moves.values()) == report.changed > 0
    assert all(move.from_provider != move.to_provider for move in report.moves)
    later = await run_backtest(reads, POLAR_FIRST, datetime.now(UTC) + timedelta(days=1))
    assert later.replayed == 0


async def test_the_cli_prints_the_same_report(loaded, tmp_path):
    rules = tmp_path / "candidate.toml"
    rules.write_text(
        DEFAULT_TEXT.replace(
            'name = "default"\nproviders = ["stripe", "polar"]',
            'name = "default"\nproviders = ["polar", "stripe"]',
        )
    )
    environment = os.environ | {
        "NATS_URL": loaded.nats_url,
        "DATABASE_URL": loaded.dsn,
        "CHECKOUT_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "200",
    }
    command = [sys.executable, "-c", "from orchestrator.cli import app; app()", "route",
               "backtest", "--rules", str(rules), "--json"]  # fmt: skip
    result = await asyncio.to_thread(
        subprocess.run, command, env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    reads = ReadModels(loaded.pool, partitions=loaded.layout.partitions)
    expected = backtest_json(await run_backtest(reads, POLAR_FIRST))
    assert json.loads(result.stdout) == expected
    human = await asyncio.to_thread(
        subprocess.run, command[:-1], env=environment, capture_output=True, text=True, timeout=60
    )
    assert f"{expected['changed']} would route differently" in human.stdout
    assert "recorded outcomes per provider" in human.stdout
