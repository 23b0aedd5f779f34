"""Turns inbox rows into commands on the command bus, and settles each row.

Each row is verified again from its raw bytes (with the time it was received), so
`webhooks replay` after a bug fix goes through the same code as the first time.
The command id is derived from (provider, event id): however often a row is
processed, its command has one effect.

Which session a row is about is resolved by the provider's own ids first (the
references recorded when the provider session was opened), our echoed metadata second
(`orchestrator.webhooks.resolution`).

Outcomes: ``done`` (command accepted), ``ignored`` (changes nothing), ``rejected``
(the decider refused it, e.g. a completion after the session expired: kept with the
reason for a human), ``unresolved`` (names no session of ours after a few retries:
kept, visible in ``webhooks status``, and reconciliation settles such sessions from the
provider's state). A session not created or not projected yet (the webhook overtook our
create) is retried with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import timedelta

import asyncpg

from events.values import Provider
from orchestrator.client import CheckoutClient, CommandPending, CommandRejected
from orchestrator.providers.base import PaymentProvider, ProviderError
from orchestrator.webhooks.inbox import InboxRow, WebhookInbox
from orchestrator.webhooks.resolution import ReferenceLookup, resolve_session_id
from orchestrator.webhooks.translate import CommandToSend, Ignored, translate

__all__ = ["WebhookProcessor"]

_log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
# The reference is projected moments after the provider session opens; a webhook that
# overtakes it is retried briefly (0.2 + 0.4 + 0.8 s) before it is stored unresolved.
RESOLVE_ATTEMPTS = 4
_RETRYABLE_REJECTIONS = frozenset({"session_not_found", "concurrency_conflict", "internal_error"})
# Providers do not promise order: an async payment result (Stripe's async_payment_succeeded)
# can overtake the completion it follows, and is refused until that completion is recorded.
_WAITS_FOR_COMPLETION = "record_async_payment_result"


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(60.0, 0.2 * 2**attempts))


class WebhookProcessor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        inbox: WebhookInbox,
        providers: Mapping[Provider, PaymentProvider],
        client: CheckoutClient,
        lookup: ReferenceLookup,
        *,
        batch: int = 50,
    ) -> None:
        self._pool = pool
        self._inbox = inbox
        self._providers = providers
        self._client = client
        self._lookup = lookup
        self._batch = batch
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event, *, idle: float = 1.0) -> None:
        while not stop.is_set():
            handled = await self.process_due()
            if handled == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(idle):
                        await self._wake.wait()

    async def process_due(self) -> int:
        """Process the rows that are due now; returns how many were looked at."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await self._inbox.claim_due(conn, self._batch)
            for row in rows:
                await self._process(conn, row)
        return len(rows)

    async def _process(self, conn: asyncpg.Connection, row: InboxRow) -> None:
        provider = self._providers.get(Provider(row.provider))
        if provider is None:
            await self._inbox.settle(conn, row.id, "rejected", f"{row.provider} is not configured")
            return
        try:
            event = provider.verify_webhook(row.headers, row.body, row.received_at)
        except ProviderError as exc:
            await self._inbox.settle(conn, row.id, "rejected", exc.message)
            return
        session_id = await resolve_session_id(event, self._lookup)
        outcome = translate(event, session_id)
        if isinstance(outcome, Ignored):
            await self._inbox.settle(conn, row.id, "ignored", outcome.reason)
        elif isinstance(outcome, CommandToSend):
            await self._send(conn, row, outcome)
        elif session_id is None and row.attempts + 1 < RESOLVE_ATTEMPTS:
            await self._inbox.retry_later(conn, row.id, outcome.reason, _backoff(row.attempts))
        else:
            await self._inbox.settle(conn, row.id, "unresolved", outcome.reason)

    async def _send(self, conn: asyncpg.Connection, row: InboxRow, command: CommandToSend) -> None:
        session_id = command.payload["session_id"]
        try:
            reply = await self._client.send(
                command.command_type, command.payload, command_id=command.command_id, timeout=5.0
            )
        except CommandRejected as rejected:
            retryable = rejected.code in _RETRYABLE_REJECTIONS or (
                rejected.code == "illegal_transition"
                and command.command_type == _WAITS_FOR_COMPLETION
            )
            if retryable and row.attempts + 1 < MAX_ATTEMPTS:
                await self._inbox.retry_later(conn, row.id, rejected.code, _backoff(row.attempts))
                return
            _log.info("webhook %s/%s rejected: %s", row.provider, row.id, rejected.code)
            await self._inbox.settle(conn, row.id, "rejected", str(rejected), session_id)
            return
        except CommandPending:
            await self._inbox.retry_later(conn, row.id, "no reply yet", _backoff(row.attempts))
            return
        await self._inbox.settle(
            conn, row.id, "done", f"{command.command_type} at sequence {reply.sequence}", session_id
        )
