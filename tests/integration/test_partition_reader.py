"""The partition reader stops when asked, whatever it was waiting for at that moment."""

from __future__ import annotations

import asyncio

import pytest

from projections.source import PartitionReader
from tests.support.projections import projection_env
from tests.support.waiting import wait_until


@pytest.fixture
async def env(nats_url, database_url, stream_names):
    async with projection_env(nats_url, database_url, stream_names) as environment:
        yield environment


async def _outstanding_pull(reader: PartitionReader) -> asyncio.Event:
    def outstanding() -> asyncio.Event | None:
        pull = reader._pull
        return None if pull is None or pull.done.is_set() else pull.done

    return await wait_until(outstanding, 10, what="an outstanding pull", interval=0.01)


async def test_close_returns_when_the_cancel_meets_a_finished_pull(env):
    """A cancel that arrives in the same step as the pull it waits on completes must still
    stop the reader. (`asyncio.wait_for` on Python 3.11 swallows such a cancel: the reader
    then pulled forever and `close()`, hence the projector's shutdown, never returned.)"""
    await env.load(3)
    reader = PartitionReader(env.nc, env.source, 0, 1, wake=asyncio.Event())
    reader.start()
    for _ in range(20):
        done = await _outstanding_pull(reader)
        done.set()  # the pull completes ...
        async with asyncio.timeout(10):
            await reader.close()  # ... and the cancel lands before the reader runs again
        reader.start()
    await reader.close()
