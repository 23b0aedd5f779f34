"""The whole sandboxed system with API keys required: real NATS, Postgres and HTTP."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from orchestrator.bootstrap import Endpoints, Gateway, ReadSide, gateway, orchestrator, read_side
from orchestrator.http.api_keys import ApiKeys, Scope
from orchestrator.sandbox.fleet import SandboxFleet
from orchestrator.settings import Settings
from tests.integration.test_commands import settings_for

CACHE_SECONDS = 0.5


@dataclass
class Secured:
    settings: Settings
    fleet: SandboxFleet
    read: ReadSide
    gw: Gateway
    keys: ApiKeys
    write_key: str
    read_key: str

    def client(self, key: str | None = None) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.gw.http_url, timeout=15, headers=headers)


@pytest.fixture
async def secured(nats_url, database_url, stream_names):
    settings = settings_for(
        stream_names,
        api_auth="required",
        api_key_cache_seconds=CACHE_SECONDS,
        read_wait_timeout_seconds=0.3,  # fuzzed min-sequences are never reached
        http_port=0,
        settlement_interval_seconds=0.2,
    )
    endpoints = Endpoints(nats_url, database_url, embedded_nats=False, embedded_postgres=False)
    async with (
        SandboxFleet() as fleet,
        orchestrator(settings, nats_url, providers=fleet.providers),
        read_side(settings, endpoints, serve_http=False) as read,
        gateway(settings, endpoints, read, fleet.providers) as gw,
    ):
        fleet.point_webhooks_at(gw.http_url)
        keys = ApiKeys(read.pool)
        write = await keys.create(Scope.WRITE, "tests")
        reader = await keys.create(Scope.READ, "tests (read)")
        yield Secured(settings, fleet, read, gw, keys, write.plaintext, reader.plaintext)
