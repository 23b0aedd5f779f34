"""Routing backtests, table-driven: recorded checkouts through candidate rules."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from events.catalog import CheckoutRequested
from events.values import (
    Address,
    Customer,
    LineItem,
    Mode,
    Provider,
    RequestedAmount,
    SessionStatus,
)
from orchestrator.routing import RouteRequest, load_rules, parse_rules
from orchestrator.routing.backtest import Move, RecordedCheckout, backtest
from orchestrator.routing.backtest_report import backtest_json
from orchestrator.services.backtesting import request_of

DEFAULT = load_rules(None)
DEFAULT_TEXT = (Path(__file__).parents[2] / "orchestrator/routing/default_rules.toml").read_text()
# The candidate: everything else to Polar first (Stripe second).
POLAR_FIRST = parse_rules(
    DEFAULT_TEXT.replace(
        'name = "default"\nproviders = ["stripe", "polar"]',
        'name = "default"\nproviders = ["polar", "stripe"]',
    ),
    source="polar-first.toml",
)


def _recorded(
    currency: str,
    country: str | None,
    provider: Provider | None,
    status: SessionStatus = SessionStatus.COMPLETE,
    *,
    amount: int = 5_000,
    n: int = 0,
    metadata: dict[str, str] | None = None,
) -> RecordedCheckout:
    request = RouteRequest(
        session_id=f"cs_{currency}{country}{n}",
        currency=currency,
        amount=amount,
        country=country,
        mode=Mode.PAYMENT,
        metadata=metadata or {},
    )
    return RecordedCheckout(request=request, provider=provider, status=status)


def test_the_candidate_differs_from_the_default_only_in_the_default_rule():
    assert POLAR_FIRST.version_id != DEFAULT.version_id


@pytest.mark.parametrize(
    ("checkout", "moved_to"),
    [
        (_recorded("USD", "US", Provider.STRIPE), Provider.POLAR),
        (_recorded("EUR", "DE", Provider.STRIPE), Provider.POLAR),
        (_recorded("XOF", "SN", Provider.LOMI), None),  # the xof rule did not change
        (_recorded("EUR", "NL", Provider.POLAR, metadata={"product_type": "digital"}), None),
        (_recorded("USD", "US", Provider.POLAR), None),  # a fallback to Polar: Polar again
        (_recorded("USD", "US", None, SessionStatus.FAILED), Provider.POLAR),
    ],
)
def test_each_checkout_moves_only_when_the_candidate_chooses_another(checkout, moved_to):
    report = backtest(POLAR_FIRST, [checkout])
    assert report.replayed == 1
    if moved_to is None:
        assert (report.changed, report.unchanged, dict(report.moves)) == (0, 1, {})
    else:
        request = checkout.request
        move = Move(request.currency, request.country, checkout.provider, moved_to)
        assert (report.changed, dict(report.moves)) == (1, {move: 1})


def test_moves_are_counted_per_currency_and_country_beside_the_recorded_outcomes():
    recorded = [
        _recorded("USD", "US", Provider.STRIPE, SessionStatus.COMPLETE, n=1),
        _recorded("USD", "US", Provider.STRIPE, SessionStatus.EXPIRED, n=2),
        _recorded("USD", "CA", Provider.STRIPE, SessionStatus.FAILED, n=3),
        _recorded("XOF", "SN", Provider.LOMI, SessionStatus.OPEN, n=4),
    ]
    report = backtest(POLAR_FIRST, recorded)
    assert report.moves == {
        Move("USD", "US", Provider.STRIPE, Provider.POLAR): 2,
        Move("USD", "CA", Provider.STRIPE, Provider.POLAR): 1,
    }
    stripe = report.outcomes[Provider.STRIPE]
    assert (stripe.sessions, stripe.paid, stripe.expired, stripe.failed) == (3, 1, 1, 1)
    assert stripe.rate(stripe.paid) == pytest.approx(1 / 3)
    assert report.outcomes[Provider.LOMI].open == 1
    body = backtest_json(report)
    assert body["changed"] == 3
    assert body["unchanged"] == 1
    assert body["moves"][0] == {
        "currency": "USD", "country": "US", "from": "stripe", "to": "polar", "sessions": 2,
    }  # fmt: skip


def test_a_checkout_the_candidate_cannot_route_counts_as_unroutable():
    only_lomi = parse_rules(
        DEFAULT_TEXT.replace(
            'name = "default"\nproviders = ["stripe", "polar"]',
            'name = "default"\nproviders = ["lomi"]',
        ),
        source="lomi-only.toml",
    )
    report = backtest(only_lomi, [_recorded("JPY", "JP", Provider.STRIPE)])
    assert (report.changed, report.unroutable) == (1, 1)
    assert report.moves == {Move("JPY", "JP", Provider.STRIPE, None): 1}


def test_the_same_rules_move_nothing():
    markets = [
        ("USD", "US", Provider.STRIPE),
        ("XOF", "CI", Provider.LOMI),
        ("GBP", "GB", Provider.STRIPE),
    ]
    recorded = [_recorded(c, k, p, n=i) for i, (c, k, p) in enumerate(markets)]
    assert backtest(DEFAULT, recorded).changed == 0


def test_the_request_is_rebuilt_from_the_requested_event_as_the_create_flow_built_it():
    requested = CheckoutRequested(
        session_id="cs_one",
        occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
        mode=Mode.PAYMENT,
        amount=RequestedAmount(
            currency="EUR",
            line_items=(LineItem(name="tea", quantity=2, unit_amount=450),),
        ),
        customer=Customer(address=Address(country="SN")),
        metadata={"product_type": "digital"},
    )
    request = request_of("cs_one", requested)
    assert (request.currency, request.amount, request.country) == ("EUR", 900, "SN")
    assert request.metadata == {"product_type": "digital"}
