"""The whole sandboxed system with API keys required: real NATS, Postgres and HTTP."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from orchestrator.bootstrap import Gateway, ReadSide
from orchestrator.http.api_keys import ApiKeys, Scope
from orchestrator.sandbox.fleet import SandboxFleet
from orchestrator.settings import Settings
from tests.support.apps import running_stack

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
    async with running_stack(
        nats_url,
        database_url,
        stream_names,
        api_auth="required",
        api_key_cache_seconds=CACHE_SECONDS,
        read_wait_timeout_seconds=0.3,  # fuzzed min-sequences are never reached
        settlement_interval_seconds=0.2,
    ) as stack:
        keys = ApiKeys(stack.read.pool)
        write = await keys.create(Scope.WRITE, "tests")
        reader = await keys.create(Scope.READ, "tests (read)")
        yield Secured(
            stack.settings,
            stack.fleet,
            stack.read,
            stack.gateway,
            keys,
            write.plaintext,
            reader.plaintext,
        )
