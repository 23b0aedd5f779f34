"""Properties of the router over generated rules, checkouts and health."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from events.values import Mode, Provider
from orchestrator.errors import NoRoute
from orchestrator.routing import HealthSnapshot, RouteRequest, RoutingRules, route
from orchestrator.routing.engine import capability_problems, ordered_providers
from orchestrator.routing.health import BreakerState

CURRENCIES = ["USD", "EUR", "XOF", "JPY", "GBP"]
COUNTRIES = ["SN", "CI", "FR", "DE", "US", "GB"]
REGIONS = {"WAEMU": ["SN", "CI"], "EU": ["FR", "DE"]}
MODES = [mode.value for mode in Mode]
PROVIDERS = list(Provider)


# Strategies are built once: building them inside a composite on every draw is slow.
BOOL = st.booleans()
LIMIT = st.none() | st.integers(0, 5000)
SPAN = st.integers(0, 5000)
LOW = st.integers(0, 3000)
WEIGHT = st.integers(0, 10)
SOME_CURRENCIES = st.lists(st.sampled_from(CURRENCIES), min_size=1, max_size=3, unique=True)
SOME_COUNTRIES = st.lists(st.sampled_from(COUNTRIES), min_size=1, max_size=3, unique=True)
SOME_REGIONS = st.lists(st.sampled_from(list(REGIONS)), min_size=1, max_size=2, unique=True)
SOME_MODES = st.lists(st.sampled_from(MODES), min_size=1, max_size=3, unique=True)
SOME_PROVIDERS = st.lists(st.sampled_from(PROVIDERS), min_size=1, max_size=4, unique=True)
KIND = st.sampled_from(["a", "b"])


@st.composite
def capabilities(draw: st.DrawFn) -> dict[str, Any]:
    currencies = draw(SOME_CURRENCIES)
    low = {code: draw(LIMIT) for code in currencies}
    limits = {code: value for code, value in low.items() if value is not None}
    return {
        "currencies": currencies,
        "modes": draw(SOME_MODES),
        "min_amount": limits,
        "max_amount": {code: value + draw(SPAN) for code, value in limits.items()},
    }


@st.composite
def matches(draw: st.DrawFn) -> dict[str, Any]:
    match: dict[str, Any] = {}
    if draw(BOOL):
        match["currencies"] = draw(SOME_CURRENCIES)
        if draw(BOOL):
            low = draw(LOW)
            match["amount"] = [low, low + draw(LOW)]
    if draw(BOOL):
        match["countries"] = draw(SOME_COUNTRIES)
    if draw(BOOL):
        match["regions"] = draw(SOME_REGIONS)
    if draw(BOOL):
        match["modes"] = draw(SOME_MODES)
    if draw(BOOL):
        match["metadata"] = {"kind": draw(KIND)}
    if draw(BOOL):
        match["metadata_present"] = ["flag"]
    return match


@st.composite
def providers(draw: st.DrawFn) -> list[Any]:
    names = draw(SOME_PROVIDERS)
    if not draw(BOOL):
        return [name.value for name in names]
    weights = [draw(WEIGHT) for _ in names]
    weights[0] = weights[0] or 1
    return [
        {"provider": name.value, "weight": weight}
        for name, weight in zip(names, weights, strict=True)
    ]


@st.composite
def routing_rules(draw: st.DrawFn) -> RoutingRules:
    rules: list[dict[str, Any]] = []
    for index in range(draw(st.integers(1, 4))):
        match = draw(matches())
        if not match:  # only the last rule may be a catch-all
            match = {"modes": draw(SOME_MODES)}
        rules.append({"name": f"rule-{index}", "match": match, "providers": draw(providers())})
    if draw(st.booleans()):
        rules.append({"name": "default", "providers": draw(providers())})
    return RoutingRules.model_validate(
        {
            "version": "generated",
            "regions": REGIONS,
            "capabilities": {name.value: draw(capabilities()) for name in PROVIDERS},
            "rules": rules,
        }
    )


METADATA = st.dictionaries(st.sampled_from(["kind", "flag"]), KIND)
SESSION_ID = st.from_regex(r"cs_[A-Za-z0-9]{1,26}", fullmatch=True)
AMOUNT = st.integers(1, 10_000)
COUNTRY = st.none() | st.sampled_from(COUNTRIES)


@st.composite
def route_requests(draw: st.DrawFn) -> RouteRequest:
    mode = draw(st.sampled_from(list(Mode)))
    metadata = draw(METADATA)
    return RouteRequest(
        session_id=draw(SESSION_ID),
        currency=draw(st.sampled_from(CURRENCIES)),
        amount=None if mode is Mode.SETUP else draw(AMOUNT),
        country=draw(COUNTRY),
        mode=mode,
        metadata=metadata,
    )


health_maps = st.dictionaries(st.sampled_from(PROVIDERS), st.booleans())
snapshots = st.builds(
    HealthSnapshot,
    states=st.dictionaries(st.sampled_from(PROVIDERS), st.sampled_from(list(BreakerState))),
    probing=st.frozensets(st.sampled_from(PROVIDERS)),
)


@settings(max_examples=200, deadline=None)
@given(routing_rules(), route_requests(), health_maps | snapshots)
def test_the_choice_is_capable_and_healthy_or_a_typed_no_route(
    rules: RoutingRules, request: RouteRequest, health: Any
) -> None:
    try:
        decision = route(rules, request, health)
    except NoRoute as no_route:
        explanation = no_route.explanation
        assert explanation.candidates == ()
    else:
        explanation = decision.explanation
        for provider in decision.candidates:
            assert not list(capability_problems(rules.capabilities[provider], request))
            if isinstance(health, HealthSnapshot):
                assert health.unavailable(provider) is None
            else:
                assert health.get(provider, True)
    assert explanation.rules_version == rules.version_id
    if explanation.matched_rule is None:
        assert explanation.dropped == ()
        return
    rule = next(rule for rule in rules.rules if rule.name == explanation.matched_rule)
    accounted = list(explanation.candidates) + [dropped.provider for dropped in explanation.dropped]
    assert sorted(accounted) == sorted(choice.provider for choice in rule.providers)
    for dropped in explanation.dropped:
        assert dropped.reason.startswith(("capability: ", "health: "))


@settings(max_examples=100, deadline=None)
@given(routing_rules(), route_requests(), health_maps)
def test_the_same_session_always_gets_the_same_decision(
    rules: RoutingRules, request: RouteRequest, health: dict[Provider, bool]
) -> None:
    reloaded = RoutingRules.model_validate(rules.model_dump())

    def outcome(given_rules: RoutingRules) -> Any:
        try:
            return route(given_rules, request, health)
        except NoRoute as no_route:
            return no_route.explanation

    assert outcome(rules) == outcome(rules) == outcome(reloaded)
    assert reloaded.version_id == rules.version_id


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 10), min_size=2, max_size=4).filter(any),
    SESSION_ID,
)
def test_a_session_keeps_its_weighted_pick(weights: list[int], session_id: str) -> None:
    rule = weighted_rule(weights)

    first = ordered_providers(rule, session_id)

    assert ordered_providers(rule, session_id) == first
    chosen = next(choice for choice in rule.providers if choice.provider is first[0])
    assert chosen.weight  # a weight-0 provider is a fallback only, never the pick
    rest = [choice.provider for choice in rule.providers if choice.provider is not first[0]]
    assert list(first[1:]) == rest


SESSION_IDS = [f"cs_{index:06d}" for index in range(4000)]


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 10), min_size=2, max_size=4))
def test_the_weighted_split_is_roughly_proportional(weights: list[int]) -> None:
    rule = weighted_rule(weights)

    picks = Counter(ordered_providers(rule, session_id)[0] for session_id in SESSION_IDS)

    total = sum(weights)
    for choice in rule.providers:
        share = picks[choice.provider] / len(SESSION_IDS)
        assert abs(share - (choice.weight or 0) / total) < 0.04


def weighted_rule(weights: list[int]) -> Any:
    rules = RoutingRules.model_validate(
        {
            "version": "w",
            "capabilities": {
                name.value: {"currencies": ["USD"], "modes": ["payment"]} for name in PROVIDERS
            },
            "rules": [
                {
                    "name": "split",
                    "providers": [
                        {"provider": name.value, "weight": weight}
                        for name, weight in zip(PROVIDERS, weights, strict=False)
                    ],
                }
            ],
        }
    )
    return rules.rules[0]
