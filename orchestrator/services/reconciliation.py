"""Reconciliation: the provider's word on sessions still open here, for every provider.

A lost webhook, one that named no session of ours, or a provider that sends none (Kong)
must never leave a paid session open for long. Each round retrieves from its provider
every session that is still open here and has been quiet for ``quiet`` (no event), and
settles what differs through the normal command path:

    provider says complete   -> ``complete``  (command id ``reconcile-complete-<session>``)
    provider says expired    -> ``expire`` (reason ``provider``; ``reconcile-expire-<session>``)
    provider says open, ...  -> nothing (a pending status never becomes success)

Command ids are derived from the session and what was seen, so two rounds, two
machines, or a webhook arriving meanwhile have one effect. A provider with unresolved
inbox rows since the last round is reconciled at once, without the quiet period.

Guarantees: retrievals per provider and round are capped (``rate_per_second`` x the
round's period); a provider that is unreachable (`ProviderUnavailable`) is left alone
for a growing back-off and nothing is changed meanwhile; a dry run sends no command.
Every difference, and every provider it could not reach, is a `Finding`, written to
``reconciliation_log`` (`ReconciliationLog`) and shown by ``checkout-orchestrator reconcile``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from events.values import Provider, SessionStatus
from orchestrator.client import CheckoutClient, CommandPending, CommandRejected
from orchestrator.providers.base import (
    PaymentProvider,
    ProviderError,
    ProviderSession,
    ProviderUnavailable,
)
from orchestrator.webhooks.inbox import WebhookInbox
from projections import CheckoutSession, ReadModels, SessionFilters

__all__ = [
    "Finding",
    "ReconcilePolicy",
    "ReconcileReport",
    "Reconciler",
    "ReconciliationLog",
    "open_sessions",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReconcilePolicy:
    """``interval``: seconds between rounds; ``quiet``: how long a session must have had no
    event before its provider is asked; ``rate_per_second``: retrievals per provider;
    ``backoff_max``: the longest wait after a provider was unreachable."""

    interval: float = 30.0
    quiet: timedelta = timedelta(seconds=30)
    rate_per_second: float = 5.0
    backoff_max: float = 600.0

    @property
    def budget_per_round(self) -> int:
        return max(1, int(self.rate_per_second * self.interval))


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference between a provider and us, or one provider we could not reach."""

    provider: str
    action: str  # complete | expire | would_complete | would_expire | retry_later | not_applied
    session_id: str | None = None
    provider_session_id: str | None = None
    ours: str | None = None
    theirs: str | None = None
    detail: str | None = None


@dataclass(slots=True)
class ReconcileReport:
    run_id: str
    at: datetime
    dry_run: bool
    checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def settled(self) -> int:
        return sum(f.action in {"complete", "expire"} for f in self.findings)


async def open_sessions(reads: ReadModels) -> AsyncIterator[CheckoutSession]:
    """Every session open here, page by page."""
    cursor: str | None = None
    while True:
        page = await reads.sessions(
            SessionFilters(status=SessionStatus.OPEN), limit=200, cursor=cursor
        )
        for session in page.data:
            yield session
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


class ReconciliationLog:
    """The ``reconciliation_log`` table (orchestrator migration 003)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, report: ReconcileReport) -> None:
        if not report.findings:
            return
        await self._pool.executemany(
            """
            INSERT INTO reconciliation_log (run_id, at, provider, session_id,
                provider_session_id, ours, theirs, action, dry_run, detail)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            """,
            [
                (
                    report.run_id,
                    report.at,
                    f.provider,
                    f.session_id,
                    f.provider_session_id,
                    f.ours,
                    f.theirs,
                    f.action,
                    report.dry_run,
                    (f.detail or "")[:1000] or None,
                )
                for f in report.findings
            ],
        )

    async def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT * FROM reconciliation_log ORDER BY at DESC, id DESC LIMIT $1", limit
        )
        return [dict(r) for r in rows]


class Reconciler:
    def __init__(
        self,
        reads: ReadModels,
        providers: Mapping[Provider, PaymentProvider],
        client: CheckoutClient | None,
        clock: Callable[[], datetime],
        policy: ReconcilePolicy,
        *,
        log: ReconciliationLog | None = None,
        inbox: WebhookInbox | None = None,
    ) -> None:
        self._reads = reads
        self._providers = providers
        self._client = client  # None: dry runs only
        self._clock = clock
        self._policy = policy
        self._log = log
        self._inbox = inbox
        self._failures: dict[Provider, int] = {}
        self._retry_at: dict[Provider, datetime] = {}
        self._last_round: datetime | None = None

    async def run_once(self, *, dry_run: bool = False) -> ReconcileReport:
        """One round over the open sessions; recorded in the log when it found anything."""
        now = self._clock()
        report = ReconcileReport(f"reconcile-{now:%Y%m%dT%H%M%S%f}", now, dry_run)
        urgent = await self._urgent_providers()
        budget = dict.fromkeys(self._providers, self._policy.budget_per_round)
        async for session in open_sessions(self._reads):
            provider = self._due(session, now, urgent)
            if provider is None or budget[provider] <= 0:
                continue
            budget[provider] -= 1
            report.checked += 1
            finding = await self.reconcile(session, dry_run=dry_run)
            if finding is not None:
                report.findings.append(finding)
        if not dry_run:
            self._last_round = now
        if self._log is not None:
            await self._log.record(report)
        return report

    async def reconcile(self, session: CheckoutSession, *, dry_run: bool = False) -> Finding | None:
        """Ask the session's provider, settle what differs; None when nothing does."""
        provider = Provider(session.provider) if session.provider else None
        adapter = self._providers.get(provider) if provider else None
        if provider is None or adapter is None or not session.provider_session_id:
            return None
        base = Finding(
            provider.value,
            "",
            session.id,
            session.provider_session_id,
            session.status.value,
        )
        try:
            remote = await adapter.retrieve_session(session.provider_session_id)
        except ProviderUnavailable as exc:
            self._back_off(provider)
            return replace(base, action="retry_later", detail=exc.code)
        except ProviderError as exc:
            return replace(base, action="not_applied", detail=f"retrieve: {exc.code}")
        self._failures.pop(provider, None)
        self._retry_at.pop(provider, None)
        return await self._settle(base, remote, dry_run=dry_run)

    async def _settle(
        self, base: Finding, remote: ProviderSession, *, dry_run: bool
    ) -> Finding | None:
        theirs = remote.status.value
        session_id = str(base.session_id)
        if remote.status is SessionStatus.COMPLETE:
            verb, payload = "complete", _completion(session_id, remote)
        elif remote.status is SessionStatus.EXPIRED:
            verb, payload = "expire", {"session_id": session_id, "reason": "provider"}
        else:
            return None  # open, or a status nobody mapped: pending, never success
        if dry_run or self._client is None:
            return replace(base, action=f"would_{verb}", theirs=theirs)
        try:
            await self._client.send(verb, payload, command_id=f"reconcile-{verb}-{session_id}")
        except (CommandRejected, CommandPending) as exc:
            _log.info("reconcile %s of %s not applied: %s", verb, session_id, exc)
            return replace(base, action="not_applied", theirs=theirs, detail=f"{verb}: {exc}")
        return replace(base, action=verb, theirs=theirs)

    def _due(self, session: CheckoutSession, now: datetime, urgent: set[str]) -> Provider | None:
        if not session.provider or not session.provider_session_id:
            return None
        provider = Provider(session.provider)
        if provider not in self._providers:
            return None
        if self._retry_at.get(provider, now) > now:
            return None  # unreachable a moment ago: leave it alone until the back-off ends
        quiet = timedelta(0) if provider.value in urgent else self._policy.quiet
        return provider if session.updated_at <= now - quiet else None

    def _back_off(self, provider: Provider) -> None:
        failures = self._failures.get(provider, 0) + 1
        self._failures[provider] = failures
        delay = min(self._policy.backoff_max, self._policy.interval * 2 ** (failures - 1))
        self._retry_at[provider] = self._clock() + timedelta(seconds=delay)
        _log.info("%s unreachable; next reconciliation in %.1f s", provider.value, delay)

    async def _urgent_providers(self) -> set[str]:
        if self._inbox is None:
            return set()
        return await self._inbox.providers_with_unresolved(since=self._last_round)


def _completion(session_id: str, remote: ProviderSession) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "payment_status": remote.payment_status.value,
        "amounts": remote.amounts.model_dump(mode="json") if remote.amounts else None,
        "references": remote.references.model_dump(mode="json"),
    }
