"""Outgoing webhooks of a simulator: sign, POST with httpx, retry, record.

`WebhookSender.send` delivers one event to the configured URL the way real providers
do: signed per attempt (the provider-specific `Signer` is called again for each
attempt, so a Stripe retry carries a fresh timestamp), retried with exponential backoff
on a connection error or a non-2xx answer, at most ``max_attempts`` times. The drop
fault (`Faults.drop_webhook`) makes a delivery vanish (recorded as ``dropped``). With no
URL configured nothing is sent and the delivery is recorded as ``no_endpoint``.

Every delivery is kept in `WebhookSender.deliveries` (also ``GET /_sim/webhooks``), and
`redeliver` sends a recorded one again with a fresh signature, as a provider's
dashboard "resend" does: tests use it to prove a webhook delivered three times has one
effect. `send(background=True)` and `enqueue` (sync) return at once; `wait_idle` waits
for those.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from orchestrator.sandbox.faults import Faults

__all__ = ["Attempt", "Delivery", "DeliveryState", "RetryPolicy", "Signer", "WebhookSender"]

Signer = Callable[[bytes], Mapping[str, str]]
"""Returns the signature headers for a body; called once per attempt."""

DeliveryState = Literal["pending", "delivered", "failed", "dropped", "no_endpoint"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most ``max_attempts`` tries, ``backoff_seconds`` doubling between them."""

    max_attempts: int = 4
    backoff_seconds: float = 0.05
    timeout_seconds: float = 5.0


@dataclass(slots=True)
class Attempt:
    status_code: int | None
    error: str | None = None


@dataclass(slots=True)
class Delivery:
    delivery_id: str
    event_id: str
    event_type: str
    url: str | None
    body: bytes
    sign: Signer = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    state: DeliveryState = "pending"

    def to_json(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "url": self.url,
            "state": self.state,
            "attempts": [{"status_code": a.status_code, "error": a.error} for a in self.attempts],
            "body": self.body.decode(),
        }


class WebhookSender:
    def __init__(
        self,
        faults: Faults,
        *,
        url: str | None = None,
        retry: RetryPolicy = RetryPolicy(),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self._faults = faults
        self._retry = retry
        self._transport = transport
        self._http: httpx.AsyncClient | None = None  # opened on first use, again after aclose
        self._ids = itertools.count(1)
        self._background: set[asyncio.Task[Delivery]] = set()
        self.deliveries: list[Delivery] = []

    async def send(
        self,
        event_id: str,
        event_type: str,
        body: bytes,
        sign: Signer,
        *,
        background: bool = False,
    ) -> Delivery:
        if background:
            return self.enqueue(event_id, event_type, body, sign)
        delivery = self._record(event_id, event_type, body, sign)
        return await self._deliver(delivery)

    def enqueue(self, event_id: str, event_type: str, body: bytes, sign: Signer) -> Delivery:
        """Deliver in the background (needs a running loop): for sends from sync code."""
        delivery = self._record(event_id, event_type, body, sign)
        self._spawn(delivery)
        return delivery

    def _record(self, event_id: str, event_type: str, body: bytes, sign: Signer) -> Delivery:
        delivery = Delivery(
            delivery_id=f"dlv_{next(self._ids)}",
            event_id=event_id,
            event_type=event_type,
            url=self.url,
            body=body,
            sign=sign,
        )
        self.deliveries.append(delivery)
        return delivery

    async def redeliver(self, delivery_id: str, *, background: bool = False) -> Delivery:
        original = self.find(delivery_id)
        return await self.send(
            original.event_id,
            original.event_type,
            original.body,
            original.sign,
            background=background,
        )

    def find(self, delivery_id: str) -> Delivery:
        for delivery in self.deliveries:
            if delivery.delivery_id == delivery_id:
                return delivery
        raise KeyError(delivery_id)

    def counters(self) -> dict[str, int]:
        counts = {"webhooks_sent": len(self.deliveries)}
        for state in ("delivered", "failed", "dropped", "no_endpoint", "pending"):
            counts[f"webhooks_{state}"] = sum(1 for d in self.deliveries if d.state == state)
        return counts

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until every background delivery has finished (all its attempts)."""
        if self._background:
            await asyncio.wait_for(asyncio.gather(*self._background), timeout=timeout)

    async def aclose(self) -> None:
        while self._background:  # a delivery may be spawned while others are cancelled
            tasks = list(self._background)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._background.difference_update(tasks)
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=self._retry.timeout_seconds, transport=self._transport
            )
        return self._http

    def _spawn(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self._deliver(delivery), name="sandbox-webhook")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _deliver(self, delivery: Delivery) -> Delivery:
        url = delivery.url
        if url is None:
            delivery.state = "no_endpoint"
            return delivery
        if self._faults.drop_webhook():
            delivery.state = "dropped"
            return delivery
        for attempt in range(self._retry.max_attempts):
            if attempt:
                await asyncio.sleep(self._retry.backoff_seconds * 2 ** (attempt - 1))
            if await self._attempt(url, delivery):
                delivery.state = "delivered"
                return delivery
        delivery.state = "failed"
        return delivery

    async def _attempt(self, url: str, delivery: Delivery) -> bool:
        headers = {"Content-Type": "application/json", **delivery.sign(delivery.body)}
        delivery.headers = headers
        try:
            response = await self._client().post(url, content=delivery.body, headers=headers)
        except httpx.HTTPError as exc:
            delivery.attempts.append(Attempt(status_code=None, error=type(exc).__name__))
            return False
        delivery.attempts.append(Attempt(status_code=response.status_code))
        return response.is_success
