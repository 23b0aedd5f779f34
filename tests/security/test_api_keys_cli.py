"""`checkout-orchestrator api-keys create / list / revoke` against a real database."""

from __future__ import annotations

import asyncio

import asyncpg
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.http.api_keys import ApiKeys, Scope


async def test_create_list_revoke(nats_url, database_url, monkeypatch, tmp_path):
    monkeypatch.setenv("NATS_URL", nats_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("CHECKOUT_DATA_DIR", str(tmp_path))
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    created = await asyncio.to_thread(
        run, "api-keys", "create", "--scope", "read", "--label", "dash"
    )
    key = next(line for line in created.splitlines() if line.startswith("ck_"))
    key_id = key.split("_")[1]
    listed = await asyncio.to_thread(run, "api-keys", "list")
    assert key_id in listed
    assert "dash" in listed
    assert key.split("_", 2)[2] not in listed
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        assert await ApiKeys(pool, cache_seconds=0).verify(key) is Scope.READ
        await asyncio.to_thread(run, "api-keys", "revoke", key_id)
        assert await ApiKeys(pool, cache_seconds=0).verify(key) is None
    finally:
        await pool.close()
    again = await asyncio.to_thread(runner.invoke, app, ["api-keys", "revoke", key_id])
    assert again.exit_code == 1
