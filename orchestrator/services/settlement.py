"""Settling sessions that no webhook settles: the expiry sweeper, and the loop that runs
reconciliation (`orchestrator.services.reconciliation`) beside it.

- Sweeper: an open session past its ``expires_at`` gets an expire command (reason
  ``sweeper``); command handling closes it at the provider first (`orchestrator.services.closing`).
  This is also how our ``expires_at`` holds at a provider that ignores it (lomi applies
  its own 60 minutes). If the provider says it completed meanwhile (``payment_completed``),
  the session is reconciled instead: money taken is never hidden behind an expiry.
- Reconciliation, every ``ReconcilePolicy.interval``: every provider (Stripe, Polar, lomi,
  Kong) is asked about the sessions still open here after a quiet period.

Both send ordinary commands with ids derived from (session, what was seen), so running
them twice, or on two machines, has one effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime

from orchestrator.client import CheckoutClient, CommandPending, CommandRejected
from orchestrator.services.reconciliation import Reconciler, open_sessions
from projections import CheckoutSession, ReadModels

__all__ = ["Settler"]

_log = logging.getLogger(__name__)


class Settler:
    def __init__(
        self,
        reads: ReadModels,
        client: CheckoutClient,
        clock: Callable[[], datetime],
        reconciler: Reconciler,
        *,
        reconcile_every: float,
    ) -> None:
        self._reads = reads
        self._client = client
        self._clock = clock
        self._reconciler = reconciler
        self._reconcile_every = reconcile_every

    @property
    def reconciler(self) -> Reconciler:
        return self._reconciler

    async def run(self, stop: asyncio.Event, *, interval: float = 5.0) -> None:
        next_reconcile = time.monotonic()
        while not stop.is_set():
            try:
                await self.sweep_once()
                if time.monotonic() >= next_reconcile:
                    next_reconcile = time.monotonic() + self._reconcile_every
                    await self._reconciler.run_once()
            except Exception:  # noqa: BLE001 - a failed round is logged and retried
                _log.exception("settlement round failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(interval, self._reconcile_every)):
                    await stop.wait()

    async def sweep_once(self) -> int:
        """Expire open sessions past their expiry; returns how many were settled."""
        now = self._clock()
        settled = 0
        async for session in open_sessions(self._reads):
            if session.expires_at is not None and session.expires_at <= now:
                settled += await self._expire(session)
        return settled

    async def _expire(self, session: CheckoutSession) -> int:
        payload = {"session_id": session.id, "reason": "sweeper"}
        try:
            await self._client.send("expire", payload, command_id=f"sweep-{session.id}")
        except CommandRejected as rejected:
            if rejected.code != "payment_completed":
                _log.info("sweep of %s not applied: %s", session.id, rejected.code)
                return 0
            finding = await self._reconciler.reconcile(session)
            return int(finding is not None and finding.action == "complete")
        except CommandPending:
            return 0
        return 1
