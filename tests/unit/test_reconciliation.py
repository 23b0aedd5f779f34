"""Reconciliation rounds with fake reads, provider and command client (pure unit tests).

The real path (NATS, Postgres, simulators over HTTP) is tests/e2e/test_provider_references.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from events.values import Mode, PaymentStatus, Provider, SessionStatus
from orchestrator.providers.base import ProviderSession, ProviderUnavailable
from orchestrator.services.reconciliation import ReconcilePolicy, Reconciler
from projections.schemas import CheckoutSession, SessionPage

T0 = datetime(2026, 12, 4, 12, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class FakeReads:
    open: list[CheckoutSession]

    async def sessions(self, _filters: Any, *, limit: int, cursor: str | None) -> SessionPage:
        assert cursor is None
        return SessionPage(data=self.open[:limit], next_cursor=None)


@dataclass
class FakeProvider:
    status: SessionStatus = SessionStatus.COMPLETE
    down: bool = False
    asked: list[str] = field(default_factory=list)

    name = Provider.STRIPE

    async def retrieve_session(self, provider_session_id: str) -> ProviderSession:
        self.asked.append(provider_session_id)
        if self.down:
            raise ProviderUnavailable(Provider.STRIPE, "503 from stripe")
        paid = self.status is SessionStatus.COMPLETE
        return ProviderSession(
            provider=Provider.STRIPE,
            provider_session_id=provider_session_id,
            status=self.status,
            payment_status=PaymentStatus.PAID if paid else PaymentStatus.UNPAID,
            mode=Mode.PAYMENT,
        )


@dataclass
class FakeClient:
    sent: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)

    async def send(
        self, command_type: str, payload: dict[str, Any], *, command_id: str | None = None
    ) -> None:
        self.sent.append((command_type, payload, command_id))


def open_session(session_id: str, *, quiet_for: timedelta) -> CheckoutSession:
    return CheckoutSession.model_construct(
        id=session_id,
        status=SessionStatus.OPEN,
        provider="stripe",
        provider_session_id=f"cs_test_{session_id}",
        updated_at=T0 - quiet_for,
    )


def reconciler(
    sessions: list[CheckoutSession],
    provider: FakeProvider,
    client: FakeClient,
    clock: Clock,
    **policy: Any,
) -> Reconciler:
    return Reconciler(
        FakeReads(sessions),  # type: ignore[arg-type]
        {Provider.STRIPE: provider},  # type: ignore[dict-item]
        client,  # type: ignore[arg-type]
        clock,
        ReconcilePolicy(**({"interval": 10.0, "quiet": timedelta(seconds=30)} | policy)),
    )


async def test_a_session_paid_at_the_provider_is_completed_with_a_deterministic_id() -> None:
    client = FakeClient()
    rec = reconciler(
        [open_session("s1", quiet_for=timedelta(minutes=1))], FakeProvider(), client, Clock()
    )
    report = await rec.run_once()
    assert (report.checked, report.settled) == (1, 1)
    ((command_type, payload, command_id),) = client.sent
    assert (command_type, command_id) == ("complete", "reconcile-complete-s1")
    assert payload["payment_status"] == "paid"
    (finding,) = report.findings
    assert (finding.ours, finding.theirs, finding.action) == ("open", "complete", "complete")


async def test_a_session_expired_at_the_provider_is_expired_for_reason_provider() -> None:
    client = FakeClient()
    provider = FakeProvider(status=SessionStatus.EXPIRED)
    rec = reconciler(
        [open_session("s1", quiet_for=timedelta(minutes=1))], provider, client, Clock()
    )
    await rec.run_once()
    assert client.sent == [
        ("expire", {"session_id": "s1", "reason": "provider"}, "reconcile-expire-s1")
    ]


async def test_open_at_the_provider_changes_nothing() -> None:
    client = FakeClient()
    provider = FakeProvider(status=SessionStatus.OPEN)
    rec = reconciler(
        [open_session("s1", quiet_for=timedelta(minutes=1))], provider, client, Clock()
    )
    report = await rec.run_once()
    assert (report.checked, report.findings, client.sent) == (1, [], [])


async def test_a_dry_run_reports_and_sends_nothing() -> None:
    client = FakeClient()
    rec = reconciler(
        [open_session("s1", quiet_for=timedelta(minutes=1))], FakeProvider(), client, Clock()
    )
    report = await rec.run_once(dry_run=True)
    assert [f.action for f in report.findings] == ["would_complete"]
    assert client.sent == []


async def test_a_session_not_quiet_yet_is_not_asked() -> None:
    provider = FakeProvider()
    rec = reconciler(
        [open_session("s1", quiet_for=timedelta(seconds=5))], provider, FakeClient(), Clock()
    )
    assert (await rec.run_once()).checked == 0
    assert provider.asked == []


async def test_retrievals_per_round_are_capped_by_the_rate() -> None:
    provider = FakeProvider(status=SessionStatus.OPEN)
    sessions = [open_session(f"s{i}", quiet_for=timedelta(minutes=1)) for i in range(5)]
    rec = reconciler(sessions, provider, FakeClient(), Clock(), rate_per_second=0.3)
    assert (await rec.run_once()).checked == 3  # 0.3/s x 10 s


async def test_an_unreachable_provider_is_left_alone_for_a_doubling_back_off() -> None:
    clock = Clock()
    provider = FakeProvider(down=True)
    client = FakeClient()
    sessions = [open_session(f"s{i}", quiet_for=timedelta(minutes=1)) for i in range(3)]
    rec = reconciler(sessions, provider, client, clock, backoff_max=25.0)

    first = await rec.run_once()
    assert [f.action for f in first.findings] == ["retry_later"]  # one call, then it stops
    assert len(provider.asked) == 1
    clock.now += timedelta(seconds=9)
    assert (await rec.run_once()).checked == 0  # still backing off (10 s)
    clock.now += timedelta(seconds=1)
    assert (await rec.run_once()).checked == 1  # retried: down again, next wait 20 s
    clock.now += timedelta(seconds=19)
    assert (await rec.run_once()).checked == 0
    clock.now += timedelta(seconds=1)
    provider.down = False
    back = await rec.run_once()
    assert back.settled == 3
    assert client.sent[0][2] == "reconcile-complete-s0"
    assert [c[0] for c in client.sent] == ["complete"] * 3
