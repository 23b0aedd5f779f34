"""Injectable faults for the provider simulators.

A `Faults` object holds a mutable `FaultPlan` and applies it to the provider API routes
(never to the ``/_sim`` control routes) through `FaultMiddleware`, and to outgoing
webhooks through `Faults.drop_webhook`. Set it from Python (``sim.faults.set(...)``) or
over HTTP (``POST /_sim/faults`` with a partial JSON plan; ``DELETE`` resets).

What a plan can do, applied in this order to each API request:

- ``latency_seconds``: sleep before answering.
- ``hang_next`` / ``hang_rate``: hang ``hang_seconds`` (set it longer than the client's
  timeout, so the client times out). ``hang_phase="before"`` hangs before the request is
  processed (nothing happened at the provider); ``"after"`` processes it, then withholds
  the answer (the provider did it, the client never learns: the case idempotency keys
  exist for).
- ``error_next`` / ``error_rate``: answer ``error_status`` (a 5xx) in the provider's own
  error shape, without processing the request.

and to webhooks: ``drop_webhooks_next`` / ``drop_webhook_rate`` (the provider "sends"
it, nobody receives it). ``*_next`` counters are consumed one per request; ``*_rate``
draws from a seeded `random.Random`, so a run is reproducible.

`Faults.release()` ends every hang at once (simulators call it when they stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTROL_PREFIX", "FaultMiddleware", "FaultPlan", "Faults", "Injected"]

CONTROL_PREFIX = "/_sim"


class FaultPlan(BaseModel):
    """What to break. All zero (the default) means a healthy provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_seconds: float = Field(default=0.0, ge=0, le=600)
    error_status: int = Field(default=503, ge=500, le=599)
    error_next: int = Field(default=0, ge=0)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    hang_next: int = Field(default=0, ge=0)
    hang_rate: float = Field(default=0.0, ge=0, le=1)
    hang_seconds: float = Field(default=30.0, ge=0, le=3600)
    hang_phase: Literal["before", "after"] = "before"
    drop_webhooks_next: int = Field(default=0, ge=0)
    drop_webhook_rate: float = Field(default=0.0, ge=0, le=1)


@dataclass(frozen=True, slots=True)
class Injected:
    """The fault chosen for one request: an error status, or hang after processing."""

    error_status: int | None = None
    hang_after: bool = False


class Faults:
    def __init__(self, plan: FaultPlan | None = None, *, seed: int = 0) -> None:
        self._plan = plan or FaultPlan()
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not cryptography
        self._released = asyncio.Event()
        self.api_requests = 0
        self.injected_errors = 0
        self.injected_hangs = 0
        self.dropped_webhooks = 0

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    def set(self, **changes: Any) -> FaultPlan:
        """Change some fields of the plan (validated); the others keep their values."""
        self._plan = FaultPlan.model_validate({**self._plan.model_dump(), **changes})
        return self._plan

    def reset(self) -> FaultPlan:
        self._plan = FaultPlan()
        return self._plan

    def release(self) -> None:
        """End every current and future hang and latency at once (used on shutdown)."""
        self._released.set()

    def rearm(self) -> None:
        """Undo `release` (used when a stopped simulator starts again)."""
        self._released = asyncio.Event()

    def counters(self) -> dict[str, int]:
        return {
            "api_requests": self.api_requests,
            "injected_errors": self.injected_errors,
            "injected_hangs": self.injected_hangs,
            "dropped_webhooks": self.dropped_webhooks,
        }

    async def on_request(self) -> Injected:
        """Apply latency and a "before" hang; say which error or "after" hang to apply."""
        self.api_requests += 1
        plan = self._plan
        if plan.latency_seconds:
            await self._sleep(plan.latency_seconds)
        hang = self._take("hang_next", plan.hang_next, plan.hang_rate)
        if hang:
            self.injected_hangs += 1
            if plan.hang_phase == "before":
                await self.hang()
        if self._take("error_next", plan.error_next, plan.error_rate):
            self.injected_errors += 1
            return Injected(error_status=plan.error_status)
        return Injected(hang_after=hang and plan.hang_phase == "after")

    async def hang(self) -> None:
        await self._sleep(self._plan.hang_seconds)

    def drop_webhook(self) -> bool:
        plan = self._plan
        dropped = self._take("drop_webhooks_next", plan.drop_webhooks_next, plan.drop_webhook_rate)
        if dropped:
            self.dropped_webhooks += 1
        return dropped

    def _take(self, counter: str, remaining: int, rate: float) -> bool:
        if remaining > 0:
            self._plan = self._plan.model_copy(update={counter: remaining - 1})
            return True
        return rate > 0 and self._random.random() < rate

    async def _sleep(self, seconds: float) -> None:
        if self._released.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._released.wait()


ErrorResponder = Callable[[int], Response]
"""Builds the provider-shaped error response for an injected status."""


class FaultMiddleware:
    """Pure ASGI middleware applying `Faults` to every route outside ``/_sim``."""

    def __init__(self, app: ASGIApp, *, faults: Faults, error_response: ErrorResponder) -> None:
        self._app = app
        self._faults = faults
        self._error_response = error_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope["path"]).startswith(CONTROL_PREFIX):
            await self._app(scope, receive, send)
            return
        injected = await self._faults.on_request()
        if injected.error_status is not None:
            await self._error_response(injected.error_status)(scope, receive, send)
            return
        if not injected.hang_after:
            await self._app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self._app(scope, receive, hold)
        await self._faults.hang()
        for message in held:
            await send(message)
