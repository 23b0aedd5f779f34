"""The contract suite's fixtures: one harness per provider, by what the provider can do."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from events.values import Provider
from tests.integration.providers.harness import (
    ALL,
    DEDUPLICATING,
    SIGNING,
    Harness,
    open_harness,
)


@pytest.fixture(params=ALL, ids=lambda p: p.value)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    name: Provider = request.param
    async with open_harness(name) as opened:
        yield opened


@pytest.fixture(params=SIGNING, ids=lambda p: p.value)
async def signing(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    name: Provider = request.param
    async with open_harness(name) as opened:
        yield opened


@pytest.fixture(params=DEDUPLICATING, ids=lambda p: p.value)
async def deduplicating(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    name: Provider = request.param
    async with open_harness(name) as opened:
        yield opened
