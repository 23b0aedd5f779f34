"""The pure router, table-driven: one table per rule kind, then the filters and no-route."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from events.catalog import DroppedCandidate, RoutingExplanation
from events.values import Address, Customer, LineItem, Mode, Provider
from orchestrator.domain.commands import CreateCheckoutSession
from orchestrator.errors import CheckoutError, NoRoute
from orchestrator.routing import (
    BreakerState,
    HealthSnapshot,
    RouteRequest,
    RoutingDecision,
    RoutingRules,
    load_rules,
    route,
)
from orchestrator.routing.engine import ordered_providers, weighted_bucket

STRIPE, POLAR, LOMI, KONG = Provider.STRIPE, Provider.POLAR, Provider.LOMI, Provider.KONG
ALL_MODES = ["payment", "setup", "subscription"]
ANY_CURRENCY = ["USD", "EUR", "GBP", "XOF", "JPY"]


def rules_with(
    match: dict[str, Any] | None = None,
    providers: list[Any] | None = None,
    capabilities: dict[str, dict[str, Any]] | None = None,
    *,
    catch_all: bool = True,
) -> RoutingRules:
    """Rule ``r`` (``match`` -> ``providers``), then a catch-all ``default`` -> polar.

    Without conditions ``r`` is the catch-all itself, so no ``default`` follows it.
    """
    caps = {name.value: {"currencies": ANY_CURRENCY, "modes": ALL_MODES} for name in Provider}
    caps.update(capabilities or {})
    rules: list[dict[str, Any]] = [
        {"name": "r", "match": match or {}, "providers": providers or ["stripe"]}
    ]
    if catch_all and match:
        rules.append({"name": "default", "providers": ["polar"]})
    return RoutingRules.model_validate(
        {
            "version": "t",
            "regions": {"WAEMU": ["BJ", "BF", "CI", "GW", "ML", "NE", "SN", "TG"]},
            "capabilities": caps,
            "rules": rules,
        }
    )


def request(**fields: Any) -> RouteRequest:
    values: dict[str, Any] = {"session_id": "cs_1", "currency": "USD", "amount": 1000}
    values.update(fields)
    return RouteRequest.model_validate(values)


def matched(match: dict[str, Any], **fields: Any) -> str | None:
    return route(rules_with(match), request(**fields)).explanation.matched_rule


# --- one table per rule kind --------------------------------------------------------------------

MATCH_TABLE = [
    # currency
    ({"currencies": ["XOF"]}, {"currency": "XOF"}, "r"),
    ({"currencies": ["xof", "EUR"]}, {"currency": "eur"}, "r"),
    ({"currencies": ["XOF"]}, {"currency": "USD"}, "default"),
    # country
    ({"countries": ["SN"]}, {"country": "SN"}, "r"),
    ({"countries": ["sn"]}, {"country": "sn"}, "r"),
    ({"countries": ["SN"]}, {"country": "CI"}, "default"),
    ({"countries": ["SN"]}, {"country": None}, "default"),
    # region
    ({"regions": ["WAEMU"]}, {"country": "CI"}, "r"),
    ({"regions": ["WAEMU"]}, {"country": "FR"}, "default"),
    ({"regions": ["WAEMU"]}, {"country": None}, "default"),
    # countries and regions together: one location condition (either holds)
    ({"countries": ["FR"], "regions": ["WAEMU"]}, {"country": "FR"}, "r"),
    ({"countries": ["FR"], "regions": ["WAEMU"]}, {"country": "TG"}, "r"),
    ({"countries": ["FR"], "regions": ["WAEMU"]}, {"country": "DE"}, "default"),
    # amount range, inclusive, in minor units of the one currency
    ({"currencies": ["USD"], "amount": [100, 1000]}, {"amount": 100}, "r"),
    ({"currencies": ["USD"], "amount": [100, 1000]}, {"amount": 1000}, "r"),
    ({"currencies": ["USD"], "amount": [100, 1000]}, {"amount": 99}, "default"),
    ({"currencies": ["USD"], "amount": [100, 1000]}, {"amount": 1001}, "default"),
    ({"currencies": ["USD"], "amount": [0, 1000]}, {"amount": None, "mode": "setup"}, "default"),
    # mode
    ({"modes": ["setup"]}, {"mode": "setup", "amount": None}, "r"),
    ({"modes": ["setup", "subscription"]}, {"mode": "subscription"}, "r"),
    ({"modes": ["setup"]}, {"mode": "payment"}, "default"),
    # metadata equals
    ({"metadata": {"product_type": "digital"}}, {"metadata": {"product_type": "digital"}}, "r"),
    ({"metadata": {"product_type": "digital"}}, {"metadata": {"product_type": "box"}}, "default"),
    ({"metadata": {"product_type": "digital"}}, {"metadata": {}}, "default"),
    ({"metadata": {"a": "1", "b": "2"}}, {"metadata": {"a": "1", "b": "2", "c": "3"}}, "r"),
    ({"metadata": {"a": "1", "b": "2"}}, {"metadata": {"a": "1"}}, "default"),
    # metadata key present
    ({"metadata_present": ["billing_customer_id"]}, {"metadata": {"billing_customer_id": ""}}, "r"),
    ({"metadata_present": ["billing_customer_id"]}, {"metadata": {"other": "x"}}, "default"),
    # conditions are AND-ed
    ({"currencies": ["USD"], "modes": ["setup"]}, {"mode": "setup", "amount": None}, "r"),
    ({"currencies": ["USD"], "modes": ["setup"]}, {"mode": "payment"}, "default"),
    ({"currencies": ["USD"], "modes": ["setup"]}, {"currency": "EUR", "mode": "setup"}, "default"),
    # no conditions: matches everything
    ({}, {"currency": "JPY", "country": None}, "r"),
]


@pytest.mark.parametrize(("match", "fields", "expected"), MATCH_TABLE)
def test_rule_conditions(match: dict[str, Any], fields: dict[str, Any], expected: str) -> None:
    assert matched(match, **fields) == expected


def test_the_first_matching_rule_wins() -> None:
    rules = RoutingRules.model_validate(
        {
            "version": "t",
            "capabilities": {
                "stripe": {"currencies": ["USD"], "modes": ["payment"]},
                "polar": {"currencies": ["USD"], "modes": ["payment"]},
            },
            "rules": [
                {"name": "a", "match": {"currencies": ["USD"]}, "providers": ["polar"]},
                {"name": "b", "match": {"currencies": ["USD"]}, "providers": ["stripe"]},
                {"name": "c", "providers": ["stripe"]},
            ],
        }
    )

    decision = route(rules, request())

    assert decision.explanation.matched_rule == "a"
    assert decision.provider is POLAR


# --- weights ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "first"),
    [
        ({"stripe": 1, "polar": 0, "lomi": 0}, STRIPE),
        ({"stripe": 0, "polar": 1, "lomi": 0}, POLAR),
        ({"stripe": 0, "polar": 0, "lomi": 5}, LOMI),
    ],
)
def test_a_sole_positive_weight_always_goes_first(weights: dict[str, int], first: Provider) -> None:
    rules = rules_with(providers=[{"provider": p, "weight": w} for p, w in weights.items()])

    for index in range(50):
        decision = route(rules, request(session_id=f"cs_{index}", currency="USD"))
        others = [p for p in (STRIPE, POLAR, LOMI) if p is not first]
        assert decision.candidates == (first, *others)  # the rest keep their listed order


def test_weighted_pick_follows_the_session_hash() -> None:
    rules = rules_with(
        providers=[{"provider": "stripe", "weight": 70}, {"provider": "polar", "weight": 30}]
    )
    picks = {}
    for index in range(200):
        session_id = f"cs_{index}"
        expected = STRIPE if weighted_bucket(session_id, 100) < 70 else POLAR
        decision = route(rules, request(session_id=session_id))
        assert decision.provider is expected
        assert set(decision.candidates) == {STRIPE, POLAR}
        picks[session_id] = decision.provider
    assert set(picks.values()) == {STRIPE, POLAR}


def test_the_bucket_is_a_pinned_sha256_value() -> None:
    # Pinned: changing the hash would move live traffic between providers.
    digest = hashlib.sha256(b"route:cs_0").digest()
    assert weighted_bucket("cs_0", 100) == int.from_bytes(digest[:8], "big") % 100
    assert [weighted_bucket(f"cs_{index}", 100) for index in range(5)] == [27, 0, 8, 17, 37]
    assert weighted_bucket("cs_01JD0000000000000000000000", 1000) == 54


def test_unweighted_rules_keep_their_order() -> None:
    rule = rules_with(providers=["lomi", "stripe", "polar"]).rules[0]

    assert ordered_providers(rule, "cs_any") == (LOMI, STRIPE, POLAR)


# --- capability filter --------------------------------------------------------------------------

CAPABILITY_TABLE = [
    (
        {"currencies": ["EUR"], "modes": ["payment"]},
        {"currency": "XOF"},
        "capability: XOF not supported",
    ),
    (
        {"currencies": ["USD"], "modes": ["payment"]},
        {"mode": "setup", "amount": None},
        "capability: mode setup not supported",
    ),
    (
        {"currencies": ["USD"], "modes": ["payment"], "min_amount": {"USD": 50}},
        {"amount": 10},
        "capability: amount 10 below minimum 50",
    ),
    (
        {"currencies": ["USD"], "modes": ["payment"], "max_amount": {"USD": 500}},
        {"amount": 501},
        "capability: amount 501 above maximum 500",
    ),
    (
        {"currencies": ["EUR"], "modes": ["payment"]},
        {"currency": "USD", "mode": "subscription"},
        "capability: mode subscription not supported; capability: USD not supported",
    ),
]


@pytest.mark.parametrize(("caps", "fields", "reason"), CAPABILITY_TABLE)
def test_capability_drops(caps: dict[str, Any], fields: dict[str, Any], reason: str) -> None:
    rules = rules_with(providers=["lomi", "stripe"], capabilities={"lomi": caps})

    decision = route(rules, request(**fields))

    assert decision.candidates == (STRIPE,)
    assert decision.explanation.dropped == (DroppedCandidate(provider=LOMI, reason=reason),)


@pytest.mark.parametrize(
    "caps",
    [
        {"currencies": ["USD"], "modes": ["payment"], "min_amount": {"USD": 50}},
        {"currencies": ["USD"], "modes": ["payment"], "max_amount": {"USD": 50}},
        {
            "currencies": ["USD", "EUR"],
            "modes": ["payment"],  # limits of another currency
            "min_amount": {"EUR": 5000},
            "max_amount": {"EUR": 5000},
        },
    ],
)
def test_amounts_within_limits_pass(caps: dict[str, Any]) -> None:
    rules = rules_with(providers=["lomi"], capabilities={"lomi": caps})

    assert route(rules, request(amount=50)).candidates == (LOMI,)


def test_setup_mode_has_no_amount_to_check() -> None:
    caps = {"currencies": ["USD"], "modes": ["setup"], "min_amount": {"USD": 50}}
    rules = rules_with(providers=["kong"], capabilities={"kong": caps})

    assert route(rules, request(mode="setup", amount=None)).candidates == (KONG,)


# --- health filter ------------------------------------------------------------------------------

HEALTH_TABLE = [
    ({STRIPE: False}, "health: marked unavailable"),
    (HealthSnapshot(states={STRIPE: BreakerState.OPEN}), "health: circuit open"),
    (
        HealthSnapshot(states={STRIPE: BreakerState.HALF_OPEN}, probing=frozenset({STRIPE})),
        "health: circuit half-open, probe in flight",
    ),
]


@pytest.mark.parametrize(("health", "reason"), HEALTH_TABLE)
def test_health_drops(health: Any, reason: str) -> None:
    rules = rules_with(providers=["stripe", "polar"])

    decision = route(rules, request(), health)

    assert decision.candidates == (POLAR,)
    assert decision.explanation.dropped == (DroppedCandidate(provider=STRIPE, reason=reason),)


@pytest.mark.parametrize(
    "health",
    [
        {},
        {STRIPE: True},
        {POLAR: False},
        HealthSnapshot(),
        HealthSnapshot(states={STRIPE: BreakerState.CLOSED}),
        HealthSnapshot(states={STRIPE: BreakerState.HALF_OPEN}),  # free to send the probe
    ],
)
def test_healthy_providers_stay(health: Any) -> None:
    decision = route(rules_with(providers=["stripe"]), request(), health)

    assert decision.candidates == (STRIPE,)


def test_a_dropped_provider_keeps_every_reason() -> None:
    rules = rules_with(
        providers=["lomi", "stripe"],
        capabilities={"lomi": {"currencies": ["XOF"], "modes": ["payment"]}},
    )

    decision = route(rules, request(currency="USD"), {LOMI: False})

    assert decision.explanation.dropped == (
        DroppedCandidate(
            provider=LOMI, reason="capability: USD not supported; health: marked unavailable"
        ),
    )


# --- no route -----------------------------------------------------------------------------------


def test_no_matching_rule_is_a_typed_no_route() -> None:
    rules = rules_with({"currencies": ["XOF"]}, catch_all=False)

    with pytest.raises(NoRoute) as caught:
        route(rules, request(currency="USD"))

    error = caught.value
    assert isinstance(error, CheckoutError)
    assert error.code == "no_route"
    assert error.message == "no routing rule matches this checkout"
    assert error.explanation == RoutingExplanation(
        rules_version=rules.version_id, matched_rule=None, candidates=()
    )


def test_every_candidate_dropped_is_a_no_route_that_says_why() -> None:
    rules = rules_with(
        providers=["lomi", "stripe"],
        capabilities={"lomi": {"currencies": ["XOF"], "modes": ["payment"]}},
    )

    with pytest.raises(NoRoute) as caught:
        route(rules, request(currency="USD"), {STRIPE: False})

    error = caught.value
    assert error.explanation.matched_rule == "r"
    assert error.explanation.candidates == ()
    assert [d.provider for d in error.explanation.dropped] == [LOMI, STRIPE]
    assert error.to_dict() == {
        "code": "no_route",
        "message": "rule 'r' matched but no provider can take it "
        "(lomi: capability: USD not supported; stripe: health: marked unavailable)",
        "explanation": {
            "rules_version": rules.version_id,
            "matched_rule": "r",
            "candidates": [],
            "dropped": [
                {"provider": "lomi", "reason": "capability: USD not supported"},
                {"provider": "stripe", "reason": "health: marked unavailable"},
            ],
        },
    }


def test_a_matched_rule_does_not_fall_through_to_the_next() -> None:
    rules = rules_with({"currencies": ["USD"]}, providers=["stripe"])

    with pytest.raises(NoRoute):
        route(rules, request(), {STRIPE: False})  # "default" (polar) would take it: not tried


# --- the decision and the request ---------------------------------------------------------------


def test_the_decision_explains_itself() -> None:
    rules = rules_with(
        providers=["lomi", "stripe", "polar"],
        capabilities={"lomi": {"currencies": ["XOF"], "modes": ["payment"]}},
    )

    decision = route(rules, request(currency="USD"))

    assert decision.provider is STRIPE
    assert decision.fallbacks == (POLAR,)
    assert decision.explanation == RoutingExplanation(
        rules_version=rules.version_id,
        matched_rule="r",
        candidates=(STRIPE, POLAR),
        dropped=(DroppedCandidate(provider=LOMI, reason="capability: USD not supported"),),
    )


def test_a_decision_without_candidates_cannot_exist() -> None:
    with pytest.raises(ValueError, match="at least one candidate"):
        RoutingDecision(
            explanation=RoutingExplanation(rules_version="t@0", matched_rule="r", candidates=())
        )


def test_a_route_request_from_a_create_command() -> None:
    command = CreateCheckoutSession(
        session_id="cs_abc",
        at=datetime(2026, 11, 21, tzinfo=UTC),
        currency="xof",
        line_items=(LineItem(name="riz", quantity=2, unit_amount=2500),),
        customer=Customer(address=Address(country="sn")),
        metadata={"product_type": "digital"},
    )

    assert RouteRequest.for_create(command) == RouteRequest(
        session_id="cs_abc",
        currency="XOF",
        amount=5000,
        country="SN",
        mode=Mode.PAYMENT,
        metadata={"product_type": "digital"},
    )


def test_a_setup_command_routes_without_amount() -> None:
    command = CreateCheckoutSession(
        session_id="cs_abc",
        at=datetime(2026, 11, 21, tzinfo=UTC),
        currency="USD",
        mode=Mode.SETUP,
        customer=Customer(country="FR", address=Address(country="DE")),
    )

    routed = RouteRequest.for_create(command)

    assert routed.amount is None
    assert routed.country == "FR"  # the customer's own country before the address's


# --- the default rules --------------------------------------------------------------------------

DEFAULT_TABLE = [
    pytest.param(
        {"currency": "XOF", "country": "SN", "amount": 5000},
        "xof",
        (LOMI, STRIPE),
        (),
        id="XOF in Senegal",
    ),
    pytest.param(
        {"currency": "XOF", "country": None, "amount": 5000},
        "xof",
        (LOMI, STRIPE),
        (),
        id="XOF anywhere",
    ),
    pytest.param(
        {"currency": "EUR", "country": "CI", "amount": 5000},
        "waemu",
        (LOMI, STRIPE),
        (),
        id="EUR in Ivory Coast",
    ),
    pytest.param(
        {"currency": "GBP", "country": "SN", "amount": 5000},
        "waemu",
        (STRIPE,),
        ((LOMI, "capability: GBP not supported"),),
        id="GBP in Senegal",
    ),
    pytest.param(
        {"currency": "XOF", "country": "SN", "amount": 5000, "mode": "subscription"},
        "xof",
        (STRIPE,),
        ((LOMI, "capability: mode subscription not supported"),),
        id="XOF subscription",
    ),
    pytest.param(
        {
            "currency": "USD",
            "country": "US",
            "amount": 1999,
            "metadata": {"product_type": "digital"},
        },
        "digital-goods",
        (POLAR, STRIPE),
        (),
        id="digital USD sale",
    ),
    pytest.param(
        {
            "currency": "USD",
            "country": "US",
            "amount": None,
            "mode": "setup",
            "metadata": {"billing_customer_id": "01JD4Q6A1Z"},
            "has_success_url": True,
        },
        "billing-setup",
        (KONG, STRIPE),
        (),
        id="setup for a billing customer",
    ),
    pytest.param(
        {
            "currency": "USD",
            "country": "US",
            "amount": None,
            "mode": "setup",
            "metadata": {"billing_customer_id": "01JD4Q6A1Z"},
        },
        "billing-setup",
        (STRIPE,),
        ((KONG, "capability: a hosted session needs a success_url"),),
        id="hosted setup without success_url skips Kong (OpenMeter refuses it)",
    ),
    pytest.param(
        {
            "currency": "USD",
            "country": "US",
            "amount": None,
            "mode": "setup",
            "metadata": {"billing_customer_id": "01JD4Q6A1Z"},
            "ui_mode": "embedded",
        },
        "billing-setup",
        (KONG, STRIPE),
        (),
        id="embedded setup needs no success_url",
    ),
    pytest.param(
        {"currency": "USD", "country": "US", "amount": None, "mode": "setup"},
        "default",
        (STRIPE,),
        ((POLAR, "capability: mode setup not supported"),),
        id="setup without billing customer",
    ),
    pytest.param(
        {"currency": "GBP", "country": "GB", "amount": 2500},
        "default",
        (STRIPE, POLAR),
        (),
        id="GBP card",
    ),
    pytest.param(
        {"currency": "GBP", "country": "GB", "amount": 20},
        None,
        (),
        (
            (STRIPE, "capability: amount 20 below minimum 30"),
            (POLAR, "capability: amount 20 below minimum 30"),
        ),
        id="GBP below minimum",
    ),
]


@pytest.mark.parametrize(("fields", "rule", "candidates", "dropped"), DEFAULT_TABLE)
def test_default_rules(
    fields: dict[str, Any],
    rule: str | None,
    candidates: tuple[Provider, ...],
    dropped: tuple[tuple[Provider, str], ...],
) -> None:
    rules = load_rules()
    expected_dropped = tuple(DroppedCandidate(provider=p, reason=r) for p, r in dropped)
    if not candidates:
        with pytest.raises(NoRoute) as caught:
            route(rules, request(**fields))
        assert caught.value.explanation.dropped == expected_dropped
        return

    decision = route(rules, request(**fields))

    assert decision.explanation.matched_rule == rule
    assert decision.candidates == candidates
    assert decision.explanation.dropped == expected_dropped
    assert decision.explanation.rules_version == rules.version_id


def test_default_rules_fall_back_when_the_first_choice_is_down() -> None:
    rules = load_rules()

    decision = route(
        rules,
        request(currency="XOF", country="SN", amount=5000),
        HealthSnapshot(states={LOMI: BreakerState.OPEN}),
    )

    assert decision.provider is STRIPE
    assert decision.explanation.dropped == (
        DroppedCandidate(provider=LOMI, reason="health: circuit open"),
    )
