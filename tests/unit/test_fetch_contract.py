"""An empty pull poll reaches FastStream as nats' own TimeoutError, whatever nats-py raised."""

from __future__ import annotations

import nats.errors
import pytest

from orchestrator.jetstream.fetch_contract import library_timeout


async def test_the_builtin_timeout_becomes_the_library_one():
    async def fetch(batch: int, timeout: float) -> list[str]:
        raise TimeoutError  # nats-py's _fetch_n when its deadline is spent

    with pytest.raises(nats.errors.TimeoutError):
        await library_timeout(fetch)(batch=64, timeout=1.0)


async def test_the_library_timeout_and_messages_pass_through():
    async def empty(batch: int, timeout: float) -> list[str]:
        raise nats.errors.TimeoutError

    async def some(batch: int, timeout: float) -> list[str]:
        return ["m1", "m2"][:batch]

    with pytest.raises(nats.errors.TimeoutError):
        await library_timeout(empty)(batch=2, timeout=1.0)
    assert await library_timeout(some)(batch=1, timeout=1.0) == ["m1"]


async def test_other_errors_are_not_touched():
    async def closed(batch: int, timeout: float) -> list[str]:
        raise nats.errors.ConnectionClosedError

    with pytest.raises(nats.errors.ConnectionClosedError):
        await library_timeout(closed)(batch=2, timeout=1.0)
