"""The command contract at the boundary every caller goes through (`wire.parse_command`).

HTTP bodies are sent on as NATS commands, so these are the rules for both. Each row of
issue 13's table is here: what used to be accepted and then broke the read side is now a
``validation_failed`` naming the field's ``loc``; nearby valid input stays accepted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from events.money import DEFAULT_MAX_AMOUNT, INT64_MAX, MAX_AMOUNTS, max_amount
from events.values import Customer
from orchestrator.domain.commands import CreateCheckoutSession
from orchestrator.errors import InvalidCommand
from orchestrator.jetstream.wire import parse_command

AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
HEADERS = {"Checkout-Command-Id": "contract-1"}
BASE: dict[str, Any] = {"currency": "EUR", "amount": 2500}


def parse(body: dict[str, Any] | bytes, command_type: str = "create") -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_command(command_type, raw, HEADERS, AT)[0]


def refused(body: dict[str, Any] | bytes, command_type: str = "create") -> InvalidCommand:
    with pytest.raises(InvalidCommand) as caught:
        parse(body, command_type)
    assert caught.value.code == "validation_failed"
    return caught.value


def locs(error: InvalidCommand) -> list[list[Any]]:
    return [e["loc"] for e in error.errors]


# -- amounts ---------------------------------------------------------------------


@pytest.mark.parametrize("amount", [2**63, 10**30, INT64_MAX, DEFAULT_MAX_AMOUNT + 1])
def test_amounts_beyond_the_currency_maximum_are_refused(amount: int) -> None:
    assert locs(refused(BASE | {"amount": amount})) == [["amount"]]


def test_the_currency_maximum_itself_is_accepted() -> None:
    assert parse(BASE | {"amount": DEFAULT_MAX_AMOUNT}).amount == DEFAULT_MAX_AMOUNT


def test_per_currency_maxima_are_data_and_fit_a_bigint() -> None:
    assert max_amount("IDR") == MAX_AMOUNTS["IDR"] > DEFAULT_MAX_AMOUNT
    assert all(limit <= INT64_MAX for limit in MAX_AMOUNTS.values())
    assert parse({"currency": "IDR", "amount": MAX_AMOUNTS["IDR"]}).amount == MAX_AMOUNTS["IDR"]
    assert locs(refused({"currency": "IDR", "amount": MAX_AMOUNTS["IDR"] + 1})) == [["amount"]]


def test_a_line_item_total_beyond_the_maximum_is_refused() -> None:
    item = {"name": "crate", "quantity": 1_000_000, "unit_amount": 1_000}
    assert locs(refused({"currency": "EUR", "line_items": [item]})) == [["line_items"]]


def test_a_huge_unit_amount_is_refused() -> None:
    item = {"name": "crate", "quantity": 1, "unit_amount": 2**64}
    assert locs(refused({"currency": "EUR", "line_items": [item]})) == [
        ["line_items", 0, "unit_amount"]
    ]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (BASE | {"amount": "5000"}, ["amount"]),
        (
            {"currency": "EUR", "line_items": [{"name": "a", "quantity": "1", "unit_amount": 5}]},
            ["line_items", 0, "quantity"],
        ),
        (
            {"currency": "EUR", "line_items": [{"name": "a", "quantity": 1, "unit_amount": "5"}]},
            ["line_items", 0, "unit_amount"],
        ),
        ({"session_id": "cs_x", "reason": "x", "extra_flag": "true"}, ["extra_flag"]),
    ],
)
def test_json_strings_are_not_numbers(body: dict[str, Any], loc: list[Any]) -> None:
    command_type = "cancel" if "reason" in body else "create"
    assert loc in locs(refused(body, command_type))


def test_nan_is_refused_without_a_crash() -> None:
    assert refused(b'{"currency": "EUR", "amount": NaN}').code == "validation_failed"


# -- text ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (BASE | {"metadata": {"a": "x\u0000y"}}, ["metadata", "a"]),
        (BASE | {"metadata": {"a\u0000": "y"}}, ["metadata", "a\u0000", "[key]"]),
        (BASE | {"customer": {"name": "Mo\u0007"}}, ["customer", "name"]),
        (BASE | {"customer": {"address": {"city": "a\u009fb"}}}, ["customer", "address", "city"]),
        (BASE | {"client_reference_id": "order\u007f"}, ["client_reference_id"]),
        (
            {"currency": "EUR", "line_items": [{"name": "a\nb", "quantity": 1, "unit_amount": 5}]},
            ["line_items", 0, "name"],
        ),
        (
            BASE | {"urls": {"success_url": "https://shop.example/ok\u0000"}},
            ["urls", "success_url"],
        ),
    ],
)
def test_control_characters_are_refused_in_every_string(
    body: dict[str, Any], loc: list[Any]
) -> None:
    assert locs(refused(body)) == [loc]


def test_control_characters_are_refused_in_other_commands_too() -> None:
    assert locs(refused({"session_id": "cs_x", "reason": "a\u0000"}, "cancel")) == [["reason"]]


def test_a_lone_surrogate_is_refused() -> None:
    error = refused(b'{"currency": "EUR", "amount": 5, "customer": {"name": "\\ud800"}}')
    assert "surrogate" in error.message


def test_unicode_text_is_accepted() -> None:
    command = parse(BASE | {"customer": {"name": "Zoë 山田 🧾"}, "metadata": {"clé": "välue"}})
    assert command.customer.name == "Zoë 山田 🧾"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (BASE | {"customer": {"name": "n" * 5001}}, ["customer", "name"]),
        (BASE | {"customer": {"phone": "1" * 256}}, ["customer", "phone"]),
        (BASE | {"customer": {"email": "a" * 250 + "@x.io"}}, ["customer", "email"]),
        (BASE | {"client_reference_id": "r" * 201}, ["client_reference_id"]),
    ],
)
def test_overlong_strings_are_refused(body: dict[str, Any], loc: list[Any]) -> None:
    assert locs(refused(body)) == [loc]


# -- email and country -----------------------------------------------------------------


@pytest.mark.parametrize("email", ["nope", "a@", "@x.io", "a b@x.io", "a@localhost"])
def test_malformed_emails_are_refused(email: str) -> None:
    assert locs(refused(BASE | {"customer": {"email": email}})) == [["customer", "email"]]


@pytest.mark.parametrize("email", ["mo@example.com", "mo@example.test", "zoë@exämple.de"])
def test_well_formed_emails_are_accepted(email: str) -> None:
    assert parse(BASE | {"customer": {"email": email}}).customer.email == email


@pytest.mark.parametrize(
    ("customer", "loc"),
    [
        ({"country": "ZZ"}, ["customer", "country"]),
        ({"country": "XX"}, ["customer", "country"]),
        ({"address": {"country": "ZZ"}}, ["customer", "address", "country"]),
    ],
)
def test_unassigned_countries_are_refused(customer: dict[str, Any], loc: list[Any]) -> None:
    assert locs(refused(BASE | {"customer": customer})) == [loc]


def test_assigned_countries_are_accepted_and_upper_cased() -> None:
    assert parse(BASE | {"customer": {"country": "gb"}}).customer.country == "GB"


# -- what the strict rules leave alone -----------------------------------------------


def test_data_read_back_or_from_a_provider_is_not_held_to_input_rules() -> None:
    """Stored events and provider answers are read as before: nothing already stored
    becomes unreadable, and a provider's odd customer data is still recorded."""
    customer = Customer(email="nope", country="ZZ", name="tab\there")
    assert customer.country == "ZZ"


def test_a_valid_command_keeps_its_values() -> None:
    command = parse(
        {
            "currency": "usd",
            "amount": 1234,
            "customer": {"email": "mo@example.com", "country": "de"},
            "metadata": {"order": "42"},
            "expires_at": "2026-11-21T14:00:00+01:00",
        }
    )
    assert isinstance(command, CreateCheckoutSession)
    assert (command.currency, command.amount, command.customer.country) == ("USD", 1234, "DE")


def test_provider_observations_are_recorded_as_reported() -> None:
    """A completion carries the customer the provider saw: refusing it for an odd email
    would lose a real payment, so only a caller's commands get the input rules."""
    body = {"session_id": "cs_x", "payment_status": "paid", "customer": {"email": "x@localhost"}}
    assert parse(body, "complete").customer.email == "x@localhost"
    assert locs(refused(body | {"amounts": {"currency": "EUR", "total": "5"}}, "complete")) == [
        ["amounts", "total"]
    ]


# -- the idempotency fingerprint --------------------------------------------------------


def context_of(body: dict[str, Any], at: datetime = AT) -> Any:
    return parse_command("create", json.dumps(body).encode(), HEADERS, at)[1]


def test_the_same_parameters_give_the_same_fingerprint() -> None:
    first = context_of({"currency": "eur", "amount": 2500, "metadata": {"a": "1", "b": "2"}})
    later = context_of(
        {"metadata": {"b": "2", "a": "1"}, "amount": 2500, "currency": "EUR"},
        at=datetime(2030, 1, 1, tzinfo=UTC),  # the stamped time is not a parameter
    )
    assert first.fingerprint == later.fingerprint
    assert first.fingerprint is not None
    assert len(first.fingerprint) == 64


@pytest.mark.parametrize(
    "changed",
    [{"amount": 9999}, {"currency": "USD"}, {"metadata": {"a": "2"}}, {"session_id": "cs_other"}],
)
def test_other_parameters_give_another_fingerprint(changed: dict[str, Any]) -> None:
    body: dict[str, Any] = {"currency": "EUR", "amount": 2500, "metadata": {"a": "1"}}
    assert context_of(body).fingerprint != context_of(body | changed).fingerprint


def test_lengths_bind_input_only_so_stored_data_still_reads() -> None:
    stored = Customer(name="n" * 6000, phone="1" * 300)
    assert (len(stored.name or ""), len(stored.phone or "")) == (6000, 300)
