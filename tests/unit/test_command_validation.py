"""Input validation at the command boundary: what a caller can and cannot send.

Commands are built the way the orchestrator builds them from a message, through
``command_adapter.validate_python``; a bad one is a pydantic ``ValidationError``
(translated to ``InvalidCommand`` at the handler, not here).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from events.money import AmountError, CurrencyError, currency_exponent, to_minor_units
from events.values import Mode, Provider
from orchestrator.domain.commands import (
    COMMAND_TYPES,
    CompleteCheckoutSession,
    CreateCheckoutSession,
    RecordRouting,
    command_adapter,
)

AT = "2026-11-21T12:00:00Z"
SID = "cs_validation_1"


def create(**fields: Any) -> CreateCheckoutSession:
    values: dict[str, Any] = {
        "type": "create",
        "session_id": SID,
        "at": AT,
        "currency": "USD",
        "amount": 1000,
    }
    command = command_adapter.validate_python(values | fields)
    assert isinstance(command, CreateCheckoutSession)
    return command


def rejected(**fields: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        create(**fields)
    return caught.value


def routing(**fields: Any) -> RecordRouting:
    values: dict[str, Any] = {
        "type": "record_routing",
        "session_id": SID,
        "at": AT,
        "provider": "stripe",
        "explanation": {"rules_version": "1", "matched_rule": None, "candidates": ["stripe"]},
    }
    command = command_adapter.validate_python(values | fields)
    assert isinstance(command, RecordRouting)
    return command


def test_a_minimal_create_is_valid() -> None:
    command = create()
    assert command.mode is Mode.PAYMENT
    assert command.currency == "USD"
    assert command.amount == 1000
    assert command.at == datetime(2026, 11, 21, 12, tzinfo=UTC)


def test_every_command_type_is_in_the_union() -> None:
    assert set(COMMAND_TYPES) == {
        "create",
        "record_routing",
        "record_provider_session_opened",
        "record_provider_call_failed",
        "mark_processing",
        "complete",
        "record_async_payment_result",
        "expire",
        "cancel",
    }


def test_an_unknown_command_type_is_rejected() -> None:
    with pytest.raises(ValidationError):
        command_adapter.validate_python({"type": "refund", "session_id": SID, "at": AT})


# --- currencies ---------------------------------------------------------------------------


@pytest.mark.parametrize("currency", ["ZZZ", "XXX", "XAU", "US", "USDD", "US1", "", 840, None])
def test_unknown_or_non_payment_currencies_are_rejected(currency: object) -> None:
    error = rejected(currency=currency)
    assert error.errors()[0]["loc"] == ("create", "currency")


def test_a_currency_without_minor_unit_is_named_as_such() -> None:
    with pytest.raises(CurrencyError, match="no minor unit"):
        currency_exponent("XXX")
    with pytest.raises(CurrencyError, match="unknown currency"):
        currency_exponent("ZZZ")


@pytest.mark.parametrize(("given", "code"), [("usd", "USD"), ("Xof", "XOF"), ("kwd", "KWD")])
def test_lower_case_currency_is_normalised(given: str, code: str) -> None:
    assert create(currency=given).currency == code


@pytest.mark.parametrize(
    ("code", "exponent"),
    [("USD", 2), ("EUR", 2), ("XOF", 0), ("XAF", 0), ("JPY", 0), ("KWD", 3), ("BHD", 3)],
)
def test_currency_exponents_follow_iso_4217(code: str, exponent: int) -> None:
    assert currency_exponent(code) == exponent


def test_line_item_in_another_currency_is_rejected() -> None:
    item = {"name": "Mug", "quantity": 1, "unit_amount": 1000, "currency": "EUR"}
    rejected(amount=None, line_items=[item])


# --- amounts ------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [0, -1, -1000, 0.0])
def test_amount_must_be_positive(amount: object) -> None:
    rejected(amount=amount)


@pytest.mark.parametrize("amount", [10.5, 0.1, float("nan"), float("inf"), Decimal("99.99")])
def test_non_integral_amount_is_rejected(amount: object) -> None:
    rejected(amount=amount)


def test_boolean_amount_is_rejected() -> None:
    rejected(amount=True)


@pytest.mark.parametrize("amount", [10000.0, Decimal(10000), 10000])
def test_integral_amount_is_accepted_as_an_int(amount: object) -> None:
    command = create(currency="XOF", amount=amount)
    assert command.amount == 10000
    assert type(command.amount) is int


@pytest.mark.parametrize(
    ("major", "currency"),
    [("12.345", "USD"), ("10.5", "XOF"), ("1.2345", "KWD"), ("0.001", "EUR"), ("1.5", "JPY")],
)
def test_decimal_finer_than_the_currency_allows_is_rejected(major: str, currency: str) -> None:
    with pytest.raises(AmountError, match="finer than"):
        to_minor_units(major, currency)


@pytest.mark.parametrize(
    ("major", "currency", "minor"),
    [
        ("1.234", "KWD", 1234),
        ("12.34", "USD", 1234),
        ("12.3", "usd", 1230),
        ("12.340", "USD", 1234),
        ("10000", "XOF", 10000),
        ("10000.00", "XOF", 10000),
        (Decimal("0.5"), "EUR", 50),
    ],
)
def test_decimal_to_minor_units(major: str | Decimal, currency: str, minor: int) -> None:
    assert to_minor_units(major, currency) == minor


@pytest.mark.parametrize("major", ["twelve", "", "NaN", "Infinity", "1e"])
def test_non_numbers_are_not_amounts(major: str) -> None:
    with pytest.raises(AmountError):
        to_minor_units(major, "USD")


def test_to_minor_units_rejects_unknown_currency() -> None:
    with pytest.raises(CurrencyError):
        to_minor_units("1.00", "ZZZ")


# --- mode and amount ------------------------------------------------------------------------


def test_setup_mode_with_an_amount_is_rejected() -> None:
    error = rejected(mode="setup", amount=1000)
    assert "setup mode" in str(error)


def test_setup_mode_with_line_items_is_rejected() -> None:
    rejected(mode="setup", amount=None, line_items=[{"name": "x", "quantity": 1, "unit_amount": 1}])


def test_setup_mode_without_an_amount_is_accepted() -> None:
    command = create(mode="setup", amount=None)
    assert command.requested_amount().total is None


@pytest.mark.parametrize("mode", ["payment", "subscription"])
def test_priced_modes_without_an_amount_are_rejected(mode: str) -> None:
    error = rejected(mode=mode, amount=None)
    assert "needs an amount or line items" in str(error)


def test_line_items_whose_total_differs_from_the_amount_are_rejected() -> None:
    items = [
        {"name": "T-shirt", "quantity": 2, "unit_amount": 1500},
        {"name": "Mug", "quantity": 1, "unit_amount": 2000},
    ]
    error = rejected(amount=4999, line_items=items)
    assert "differs from the line items' total 5000" in str(error)
    assert create(amount=5000, line_items=items).requested_amount().total == 5000
    assert create(amount=None, line_items=items).requested_amount().total == 5000


@pytest.mark.parametrize(
    "item",
    [
        {"name": "", "quantity": 1, "unit_amount": 100},
        {"name": "x", "quantity": 0, "unit_amount": 100},
        {"name": "x", "quantity": 1, "unit_amount": -1},
        {"name": "x", "quantity": 1, "unit_amount": 1.5},
    ],
)
def test_malformed_line_items_are_rejected(item: dict[str, Any]) -> None:
    rejected(amount=None, line_items=[item])


def test_more_than_100_line_items_are_rejected() -> None:
    item = {"name": "x", "quantity": 1, "unit_amount": 1}
    rejected(amount=None, line_items=[item] * 101)
    assert create(amount=None, line_items=[item] * 100).requested_amount().total == 100


# --- metadata -----------------------------------------------------------------------------


def test_metadata_at_the_limits_is_accepted() -> None:
    metadata = {f"key_{i:02}": "v" for i in range(50)}
    assert len(create(metadata=metadata).metadata) == 50
    assert create(metadata={"k" * 40: "v" * 500}).metadata == {"k" * 40: "v" * 500}


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({f"key_{i:02}": "v" for i in range(51)}, id="51-keys"),
        pytest.param({"k" * 41: "v"}, id="41-char-key"),
        pytest.param({"k": "v" * 501}, id="501-char-value"),
        pytest.param({"": "v"}, id="empty-key"),
        pytest.param({"k": 1}, id="non-string-value"),
    ],
)
def test_metadata_beyond_the_limits_is_rejected(metadata: dict[str, Any]) -> None:
    rejected(metadata=metadata)


# --- urls ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["/success", "ftp://x", "example.com", "https://", "https:///path", "https://x.test/a b"],
)
@pytest.mark.parametrize("field", ["success_url", "cancel_url", "return_url"])
def test_non_absolute_urls_are_rejected(field: str, url: str) -> None:
    rejected(urls={field: url})


@pytest.mark.parametrize(
    "url",
    [
        "https://x.test/s?id={CHECKOUT_SESSION_ID}",
        "http://127.0.0.1:8000/ok",
        "https://shop.example.sn/merci",
    ],
)
def test_absolute_urls_are_accepted(url: str) -> None:
    assert create(urls={"success_url": url}).urls.success_url == url


def test_overlong_url_is_rejected() -> None:
    rejected(urls={"success_url": "https://x.test/" + "a" * 2048})


def test_checkout_url_of_an_opened_session_must_be_absolute() -> None:
    opened = {
        "type": "record_provider_session_opened",
        "session_id": SID,
        "at": AT,
        "provider": "stripe",
        "provider_session_id": "cs_1",
    }
    command_adapter.validate_python(opened | {"checkout_url": "https://checkout.test/cs_1"})
    with pytest.raises(ValidationError):
        command_adapter.validate_python(opened | {"checkout_url": "/pay/cs_1"})


# --- providers, times, ids, unknown fields ---------------------------------------------------


@pytest.mark.parametrize("provider", list(Provider))
def test_known_providers_are_accepted(provider: Provider) -> None:
    assert routing(provider=provider.value).provider is provider


@pytest.mark.parametrize("provider", ["paypal", "Stripe", "", None])
def test_unknown_provider_in_record_routing_is_rejected(provider: object) -> None:
    with pytest.raises(ValidationError):
        routing(provider=provider)


def test_unknown_provider_among_routing_candidates_is_rejected() -> None:
    explanation = {"rules_version": "1", "matched_rule": None, "candidates": ["adyen"]}
    with pytest.raises(ValidationError):
        routing(explanation=explanation)


@pytest.mark.parametrize("at", ["2026-11-21T12:00:00", datetime(2026, 11, 21, 12)])  # noqa: DTZ001
def test_naive_command_time_is_rejected(at: object) -> None:
    error = rejected(at=at)
    assert "time zone" in str(error)


def test_naive_expiry_is_rejected() -> None:
    rejected(expires_at="2026-11-21T13:00:00")


def test_aware_times_are_normalised_to_utc() -> None:
    dakar_noon_plus_one = datetime(2026, 11, 21, 13, tzinfo=timezone(timedelta(hours=1)))
    command = create(at=dakar_noon_plus_one, expires_at="2026-11-21T14:00:00+01:00")
    assert command.at == datetime(2026, 11, 21, 12, tzinfo=UTC)
    assert command.at.tzinfo is UTC
    assert command.expires_at == datetime(2026, 11, 21, 13, tzinfo=UTC)


@pytest.mark.parametrize("expires_at", ["2026-11-21T12:00:00Z", "2026-11-21T11:00:00Z"])
def test_expiry_must_be_after_the_command_time(expires_at: str) -> None:
    error = rejected(expires_at=expires_at)
    assert "in the future" in str(error)


@pytest.mark.parametrize("session_id", ["", "a.b", "a b", ">", "*", "a" * 65, "abc\n", "é"])
def test_invalid_session_ids_are_rejected(session_id: str) -> None:
    rejected(session_id=session_id)


def test_unknown_fields_are_rejected() -> None:
    error = rejected(amount_total=1000)
    assert error.errors()[0]["type"] == "extra_forbidden"


def test_unknown_nested_fields_are_rejected() -> None:
    rejected(customer={"email": "jo@example.com", "ssn": "123"})
    rejected(urls={"success_url": "https://x.test/ok", "failure_url": "https://x.test/ko"})


def test_unknown_fields_on_other_commands_are_rejected() -> None:
    with pytest.raises(ValidationError):
        command_adapter.validate_python(
            {"type": "cancel", "session_id": SID, "at": AT, "refund": True}
        )


def test_commands_are_frozen() -> None:
    command = create()
    with pytest.raises(ValidationError):
        command.amount = 1  # type: ignore[misc]


def test_completion_amounts_are_validated_too() -> None:
    base = {"type": "complete", "session_id": SID, "at": AT, "payment_status": "paid"}
    command = command_adapter.validate_python(
        base | {"amounts": {"currency": "xof", "total": 10000.0}}
    )
    assert isinstance(command, CompleteCheckoutSession)
    assert command.amounts is not None
    assert command.amounts.currency == "XOF"
    assert command.amounts.total == 10000
    with pytest.raises(ValidationError):
        command_adapter.validate_python(base | {"amounts": {"currency": "XOF", "total": 0.5}})
    with pytest.raises(ValidationError):
        command_adapter.validate_python(base | {"payment_status": "refunded"})
