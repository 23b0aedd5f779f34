"""Routing backtests: recorded checkouts replayed through candidate rules with the pure router.

`backtest(candidate, recorded)` routes each recorded checkout's request with ``candidate``
(every provider healthy: a backtest compares rules, not outages) and compares the first
choice with the provider that took the session when it happened. It reports:

- how many would route differently, and the moves ``from -> to`` per currency and
  country (``to`` is ``None`` when the candidate rules route it nowhere: `NoRoute`);
- each provider's recorded outcomes (paid = ``complete``, ``expired``, ``failed``, still
  open) and their rates, so a move towards a provider can be weighed against how that
  provider's checkouts actually ended.

Pure: no I/O, no clock. The recorded checkouts come from the read models (the CLI and
the console page load them with `projections`' queries).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from events.values import Provider, SessionStatus
from orchestrator.errors import NoRoute
from orchestrator.routing.engine import ALL_HEALTHY, RouteRequest, route
from orchestrator.routing.rules import RoutingRules

__all__ = ["BacktestReport", "Move", "Outcomes", "RecordedCheckout", "backtest"]


@dataclass(frozen=True, slots=True)
class RecordedCheckout:
    """One checkout as it happened: what the router saw, who took it, how it ended."""

    request: RouteRequest
    provider: Provider | None
    """the provider that opened it (after any fallback); None if none could"""
    status: SessionStatus


@dataclass(frozen=True, slots=True)
class Move:
    """Checkouts of one currency and country that would go from one provider to another."""

    currency: str
    country: str | None
    from_provider: Provider | None
    to_provider: Provider | None


@dataclass(slots=True)
class Outcomes:
    """How one provider's recorded checkouts ended."""

    sessions: int = 0
    paid: int = 0
    expired: int = 0
    failed: int = 0
    open: int = 0

    def add(self, status: SessionStatus) -> None:
        self.sessions += 1
        if status is SessionStatus.COMPLETE:
            self.paid += 1
        elif status is SessionStatus.EXPIRED:
            self.expired += 1
        elif status is SessionStatus.FAILED:
            self.failed += 1
        else:
            self.open += 1

    def rate(self, count: int) -> float:
        return count / self.sessions if self.sessions else 0.0


@dataclass(slots=True)
class BacktestReport:
    rules_version: str
    replayed: int = 0
    changed: int = 0
    unroutable: int = 0
    """recorded checkouts the candidate rules route nowhere"""
    moves: Counter[Move] = field(default_factory=Counter)
    outcomes: dict[Provider | None, Outcomes] = field(default_factory=dict)

    @property
    def unchanged(self) -> int:
        return self.replayed - self.changed


def _first_choice(rules: RoutingRules, request: RouteRequest) -> Provider | None:
    try:
        return route(rules, request, ALL_HEALTHY).provider
    except NoRoute:
        return None


def backtest(candidate: RoutingRules, recorded: Iterable[RecordedCheckout]) -> BacktestReport:
    """Replay ``recorded`` through ``candidate``; see the module docstring."""
    report = BacktestReport(rules_version=candidate.version_id)
    for checkout in recorded:
        report.replayed += 1
        report.outcomes.setdefault(checkout.provider, Outcomes()).add(checkout.status)
        chosen = _first_choice(candidate, checkout.request)
        if chosen is None:
            report.unroutable += 1
        if chosen == checkout.provider:
            continue
        report.changed += 1
        request = checkout.request
        report.moves[Move(request.currency, request.country, checkout.provider, chosen)] += 1
    return report
