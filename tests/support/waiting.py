"""Waiting on a condition with a timeout: the only way tests wait for something to happen.

A test never sleeps to let something happen; it names what it waits for and how long that
may take. ``wait_until`` polls the condition (a plain or an async callable) until it returns
something truthy and returns that; after ``timeout`` seconds the test fails with a
`WaitTimeout` naming what it waited for (an ``AssertionError``, so pytest reports it as a
failed expectation, and a ``TimeoutError``, so callers may catch it as one).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

__all__ = ["WaitTimeout", "wait_until"]

T = TypeVar("T")

POLL_SECONDS = 0.05


class WaitTimeout(AssertionError, TimeoutError):
    """A condition did not hold within its timeout."""


@overload
async def wait_until(
    condition: Callable[[], Awaitable[T | None]],
    timeout: float = ...,
    *,
    what: str = ...,
    interval: float = ...,
    ignoring: tuple[type[BaseException], ...] = ...,
) -> T: ...


@overload
async def wait_until(
    condition: Callable[[], T | None],
    timeout: float = ...,
    *,
    what: str = ...,
    interval: float = ...,
    ignoring: tuple[type[BaseException], ...] = ...,
) -> T: ...


async def wait_until(
    condition: Callable[[], Any],
    timeout: float = 30.0,
    *,
    what: str = "",
    interval: float = POLL_SECONDS,
    ignoring: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll ``condition`` every ``interval`` s until it returns a truthy value; return it.

    ``ignoring``: exceptions that mean "not yet" (a server still restarting, a cluster still
    electing); the last one is chained to the `WaitTimeout`. A call of ``condition`` that
    is still running when the time is up is cancelled.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        budget = asyncio.timeout(max(deadline - time.monotonic(), interval))
        try:
            async with budget:
                result = condition()
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError as exc:
            if not budget.expired() and not isinstance(exc, ignoring):
                raise  # the condition's own timeout, not one it was told to ignore
            last_error = exc
        except ignoring as exc:
            last_error = exc
        else:
            if result:
                return result
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await asyncio.sleep(min(interval, left))
    label = what or getattr(condition, "__name__", "a condition")
    raise WaitTimeout(f"timed out after {timeout:g} s waiting for {label}") from last_error
