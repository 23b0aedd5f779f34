"""Settling sessions that no webhook settles: the expiry sweeper and the poller.

- Sweeper: an open session past its ``expires_at`` gets an expire command (reason
  ``sweeper``); command handling closes it at the provider first (`orchestrator.services.closing`).
  If the provider says it completed meanwhile (``payment_completed``), the completion is
  recorded instead: money taken is never hidden behind an expiry.
- Poller: Kong sends no webhooks and lomi's may name no session; open sessions at those
  providers are retrieved and their completion or expiry recorded.

Both send ordinary commands with ids derived from (session, what was seen), so running
them twice, or on two machines, has one effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from events.values import Provider, SessionStatus
from orchestrator.client import CheckoutClient, CommandPending, CommandRejected
from orchestrator.providers.base import PaymentProvider, ProviderError, ProviderSession
from projections import CheckoutSession, ReadModels, SessionFilters

__all__ = ["POLLED_PROVIDERS", "Settler"]

_log = logging.getLogger(__name__)

POLLED_PROVIDERS = frozenset({Provider.KONG, Provider.LOMI})


class Settler:
    def __init__(
        self,
        reads: ReadModels,
        providers: Mapping[Provider, PaymentProvider],
        client: CheckoutClient,
        clock: Callable[[], datetime],
        *,
        poll_after: timedelta = timedelta(seconds=30),
    ) -> None:
        self._reads = reads
        self._providers = providers
        self._client = client
        self._clock = clock
        self._poll_after = poll_after

    async def run(self, stop: asyncio.Event, *, interval: float = 5.0) -> None:
        while not stop.is_set():
            try:
                await self.sweep_once()
                await self.poll_once()
            except Exception:  # noqa: BLE001 - a failed round is logged and retried
                _log.exception("settlement round failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()

    async def sweep_once(self) -> int:
        """Expire open sessions past their expiry; returns how many were settled."""
        now = self._clock()
        settled = 0
        async for session in self._open_sessions():
            if session.expires_at is not None and session.expires_at <= now:
                settled += await self._expire(session)
        return settled

    async def poll_once(self) -> int:
        """Ask Kong and lomi about their open sessions; returns how many were settled."""
        quiet_since = self._clock() - self._poll_after
        settled = 0
        async for session in self._open_sessions():
            polled = session.provider is not None and Provider(session.provider) in POLLED_PROVIDERS
            if polled and session.updated_at <= quiet_since:
                settled += await self._poll(session)
        return settled

    async def _open_sessions(self) -> AsyncIterator[CheckoutSession]:
        cursor: str | None = None
        while True:
            page = await self._reads.sessions(
                SessionFilters(status=SessionStatus.OPEN), limit=200, cursor=cursor
            )
            for session in page.data:
                yield session
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def _expire(self, session: CheckoutSession) -> int:
        payload = {"session_id": session.id, "reason": "sweeper"}
        try:
            await self._client.send("expire", payload, command_id=f"sweep-{session.id}")
        except CommandRejected as rejected:
            adapter = self._adapter(session)
            if rejected.code != "payment_completed" or adapter is None:
                _log.info("sweep of %s not applied: %s", session.id, rejected.code)
                return 0
            return await self._poll(session)
        except CommandPending:
            return 0
        return 1

    async def _poll(self, session: CheckoutSession) -> int:
        adapter = self._adapter(session)
        if adapter is None or not session.provider_session_id:
            return 0
        remote = await self._retrieve(adapter, session.provider_session_id)
        if remote is None:
            return 0
        if remote.status is SessionStatus.COMPLETE:
            return await self._complete(session.id, remote)
        if remote.status is SessionStatus.EXPIRED:
            payload = {"session_id": session.id, "reason": "provider"}
            return await self._command("expire", payload, f"poll-expired-{session.id}")
        return 0

    async def _complete(self, session_id: str, remote: ProviderSession) -> int:
        payload = {
            "session_id": session_id,
            "payment_status": remote.payment_status.value,
            "amounts": remote.amounts.model_dump(mode="json") if remote.amounts else None,
            "references": remote.references.model_dump(mode="json"),
        }
        return await self._command("complete", payload, f"poll-complete-{session_id}")

    def _adapter(self, session: CheckoutSession) -> PaymentProvider | None:
        return self._providers.get(Provider(session.provider)) if session.provider else None

    @staticmethod
    async def _retrieve(
        adapter: PaymentProvider, provider_session_id: str
    ) -> ProviderSession | None:
        try:
            return await adapter.retrieve_session(provider_session_id)
        except ProviderError as exc:
            _log.info("retrieve at %s failed: %s", adapter.name.value, exc.code)
            return None

    async def _command(self, command_type: str, payload: dict[str, Any], command_id: str) -> int:
        try:
            await self._client.send(command_type, payload, command_id=command_id)
        except (CommandRejected, CommandPending) as exc:
            _log.info("%s for %s not applied: %s", command_type, payload["session_id"], exc)
            return 0
        return 1
