"""An idle orchestrator logs nothing: its empty polls of the command queue are not crashes."""

from __future__ import annotations

import asyncio
import logging
import time

from orchestrator.bootstrap import orchestrator
from tests.support.apps import settings_for

EMPTY_POLLS = 4


async def test_idle_command_queue_polls_log_no_error(nats_url, stream_names, caplog):
    caplog.set_level(logging.INFO)
    async with orchestrator(settings_for(stream_names), nats_url) as system:
        subscription = system.commands._subscription  # the command worker's pull
        polls = 0
        original = subscription.fetch

        async def counted(*args, **kwargs):
            nonlocal polls
            try:
                return await original(*args, **kwargs)
            finally:
                polls += 1

        subscription.fetch = counted
        deadline = time.monotonic() + 30
        while polls < EMPTY_POLLS and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert polls >= EMPTY_POLLS
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == [], [r.getMessage() for r in loud]
