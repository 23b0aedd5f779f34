"""The router: a pure function from (rules, checkout, health) to ordered candidates.

``route`` takes the first rule whose conditions all hold, orders its providers (a
weighted rule puts a per-session, stable pick first), then drops every provider that
cannot take the checkout (capabilities: currency, mode, amount limits, a success_url for
a provider whose hosted page needs one) or is failing now
(health). It guarantees:

- the chosen provider (first candidate) is capable and healthy, or `NoRoute` is raised;
- every provider of the matched rule is either a candidate or in ``dropped`` with all
  its reasons, so the explanation in the routed event accounts for each one;
- the same rules, request and health give the same decision: no clock, no randomness,
  no I/O. The weighted pick hashes the session id with sha256, stable across processes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Protocol

from pydantic import Field, model_validator

from events.catalog import DroppedCandidate, RoutingExplanation, UiMode
from events.money import CurrencyCode, MinorUnits
from events.values import CountryCode, Metadata, Mode, Provider, Value
from orchestrator.domain.commands import CreateCheckoutSession
from orchestrator.errors import NoRoute
from orchestrator.providers.base import Capabilities
from orchestrator.routing.rules import Match, RoutingRules, Rule

__all__ = [
    "ALL_HEALTHY",
    "Health",
    "HealthView",
    "RouteRequest",
    "RoutingDecision",
    "capability_problems",
    "matches",
    "ordered_providers",
    "route",
    "weighted_bucket",
]


class HealthView(Protocol):
    """What the router asks about health: why a provider must be skipped now, if it must."""

    def unavailable(self, provider: Provider) -> str | None: ...


Health = HealthView | Mapping[Provider, bool]
"""A `HealthView`, or a plain map (``False`` = skip; a provider not in it is healthy)."""

ALL_HEALTHY: Mapping[Provider, bool] = MappingProxyType({})


class RouteRequest(Value):
    """What the router looks at in a checkout. ``amount`` is ``None`` in setup mode."""

    session_id: str = Field(min_length=1)
    currency: CurrencyCode
    amount: MinorUnits | None = Field(default=None, ge=0)
    country: CountryCode | None = None
    mode: Mode = Mode.PAYMENT
    metadata: Metadata = Field(default_factory=dict)
    ui_mode: UiMode = "hosted"
    has_success_url: bool = False

    @classmethod
    def for_create(cls, command: CreateCheckoutSession) -> RouteRequest:
        """The routing view of a create command: total amount, the customer's country."""
        customer = command.customer
        address_country = customer.address.country if customer.address else None
        items_total = sum(item.total for item in command.line_items)
        return cls(
            session_id=command.session_id,
            currency=command.currency,
            amount=command.amount if command.amount is not None else (items_total or None),
            country=customer.country or address_country,
            mode=command.mode,
            metadata=command.metadata,
            ui_mode=command.ui_mode,
            has_success_url=command.urls.success_url is not None,
        )


class RoutingDecision(Value):
    """Candidates best first (the first is the chosen one) and why."""

    explanation: RoutingExplanation

    @model_validator(mode="after")
    def _has_candidate(self) -> RoutingDecision:
        if not self.explanation.candidates:
            raise ValueError("a routing decision needs at least one candidate")
        return self

    @property
    def provider(self) -> Provider:
        return self.explanation.candidates[0]

    @property
    def candidates(self) -> tuple[Provider, ...]:
        return self.explanation.candidates

    @property
    def fallbacks(self) -> tuple[Provider, ...]:
        return self.explanation.candidates[1:]


def _location_matches(rules: RoutingRules, match: Match, country: str | None) -> bool:
    if match.countries is None and match.regions is None:
        return True
    if country is None:
        return False
    in_regions = any(country in rules.regions[name] for name in match.regions or ())
    return in_regions or country in (match.countries or ())


def matches(rules: RoutingRules, match: Match, request: RouteRequest) -> bool:
    """Whether every condition of ``match`` holds for ``request``."""
    return (
        (match.currencies is None or request.currency in match.currencies)
        and _location_matches(rules, match, request.country)
        and (match.amount is None or request.amount in match.amount)
        and (match.modes is None or request.mode in match.modes)
        and all(request.metadata.get(key) == value for key, value in match.metadata.items())
        and all(key in request.metadata for key in match.metadata_present)
    )


def weighted_bucket(session_id: str, total: int) -> int:
    """A stable point in ``[0, total)`` for a session: the same id always lands the same."""
    digest = hashlib.sha256(f"route:{session_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % total


def ordered_providers(rule: Rule, session_id: str) -> tuple[Provider, ...]:
    """The rule's providers in trial order; a weighted rule puts its pick first."""
    listed = tuple(choice.provider for choice in rule.providers)
    if not rule.weighted:
        return listed
    point = weighted_bucket(session_id, sum(choice.weight or 0 for choice in rule.providers))
    for choice in rule.providers:
        point -= choice.weight or 0
        if point < 0:
            return (choice.provider, *(name for name in listed if name is not choice.provider))
    return listed  # pragma: no cover - the weights sum to the total, so a pick is made


def capability_problems(caps: Capabilities, request: RouteRequest) -> Iterator[str]:
    """Why a provider with ``caps`` cannot take ``request`` (nothing when it can)."""
    if request.mode not in caps.modes:
        yield f"capability: mode {request.mode.value} not supported"
    hosted = request.ui_mode == "hosted"
    if caps.hosted_requires_success_url and hosted and not request.has_success_url:
        yield "capability: a hosted session needs a success_url"
    if request.currency not in caps.currencies:
        yield f"capability: {request.currency} not supported"
        return
    if request.amount is None:
        return
    low = caps.min_amount.get(request.currency)
    high = caps.max_amount.get(request.currency)
    if low is not None and request.amount < low:
        yield f"capability: amount {request.amount} below minimum {low}"
    if high is not None and request.amount > high:
        yield f"capability: amount {request.amount} above maximum {high}"


def _health_problem(health: Health, provider: Provider) -> str | None:
    if isinstance(health, Mapping):
        return None if health.get(provider, True) else "health: marked unavailable"
    return health.unavailable(provider)


def _no_route_message(explanation: RoutingExplanation) -> str:
    if explanation.matched_rule is None:
        return "no routing rule matches this checkout"
    reasons = "; ".join(f"{d.provider.value}: {d.reason}" for d in explanation.dropped)
    return f"rule {explanation.matched_rule!r} matched but no provider can take it ({reasons})"


def route(
    rules: RoutingRules, request: RouteRequest, health: Health = ALL_HEALTHY
) -> RoutingDecision:
    """Choose the providers for a checkout, best first; `NoRoute` when none can take it."""
    rule = next((rule for rule in rules.rules if matches(rules, rule.match, request)), None)
    candidates: list[Provider] = []
    dropped: list[DroppedCandidate] = []
    for provider in ordered_providers(rule, request.session_id) if rule else ():
        problems = list(capability_problems(rules.capabilities[provider], request))
        sick = _health_problem(health, provider)
        problems.extend([sick] if sick else [])
        if problems:
            dropped.append(DroppedCandidate(provider=provider, reason="; ".join(problems)))
        else:
            candidates.append(provider)
    explanation = RoutingExplanation(
        rules_version=rules.version_id,
        matched_rule=rule.name if rule else None,
        candidates=tuple(candidates),
        dropped=tuple(dropped),
    )
    if not candidates:
        raise NoRoute(_no_route_message(explanation), explanation)
    return RoutingDecision(explanation=explanation)
