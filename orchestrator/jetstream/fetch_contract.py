"""Keep nats-py's pull-fetch contract for FastStream's pull loop: an empty poll is a
`nats.errors.TimeoutError`, never the builtin `TimeoutError`.

Why: on an idle consumer nats-py (2.15, 2.16) sends the no-wait probe of a
``fetch(batch > 1, timeout)`` with ``expires``, so the server lingers and answers 408 at
expiry. When that 408 lands just before the client's own timer, ``_fetch_n`` finds its
deadline spent and raises the builtin ``TimeoutError`` (``raise asyncio.TimeoutError``)
instead of ``nats.errors.TimeoutError``, its documented error. FastStream's pull loop
treats only the latter as "no messages"; the builtin one ends the loop task, and its
supervisor restarts it with ``ERROR ... Task-21 raised an exception, retrying ...
TimeoutError`` and a traceback, in normal idle operation.

`keep_fetch_contract` wraps ``fetch`` on each started pull subscription of a broker (an
attribute of those objects only, no process-wide patch), turning the builtin timeout
into the library's own. Nothing is lost either way (the poll was empty); what changes
is that an idle queue is no longer reported as a crash. The race is rare (it needs the
408 and the timer to meet, more likely on a loaded host); the wrapper is installed right
after the broker starts, so only a poll already under way then is left unwrapped. Remove
once nats-py raises its own error there (nats-io/nats.py, ``_fetch_n``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from faststream.nats import NatsBroker

__all__ = ["keep_fetch_contract", "library_timeout"]

Fetch = Callable[..., Awaitable[list[Any]]]


def library_timeout(fetch: Fetch) -> Fetch:
    """``fetch``, raising `nats.errors.TimeoutError` where it raised the builtin one."""

    @functools.wraps(fetch)
    async def fetched(*args: Any, **kwargs: Any) -> list[Any]:
        try:
            return await fetch(*args, **kwargs)
        except nats.errors.TimeoutError:
            raise
        except TimeoutError as exc:
            raise nats.errors.TimeoutError from exc

    return fetched


def keep_fetch_contract(broker: NatsBroker) -> int:
    """Wrap ``fetch`` of every started pull subscription of ``broker``; how many."""
    wrapped = 0
    for subscriber in broker.subscribers:
        subscription = getattr(subscriber, "subscription", None)
        fetch = getattr(subscription, "fetch", None)
        if fetch is None or getattr(fetch, "__wrapped__", None) is not None:
            continue
        subscription.fetch = library_timeout(fetch)  # type: ignore[union-attr]
        wrapped += 1
    return wrapped
