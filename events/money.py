"""Currencies and amounts: integer minor units checked against ISO 4217.

Owns the one rule every provider shares: an amount is an integer count of the
currency's minor unit (cents for USD, francs for XOF, fils for KWD). Floats never
hold money here. Provider-specific rules (Stripe's zero-decimal list, ISK in
hundreds) live with the provider adapters, not here.

Also owns the largest amount a caller may ask for, per currency (`max_amount`): what
the strictest provider accepts (Stripe: eight digits in the minor unit for most
currencies, twelve for IDR), always far below the signed 64-bit ``bigint`` the read
models store amounts in (`INT64_MAX` bounds every `MinorUnits`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Annotated, Any, Final

from iso4217 import Currency
from pydantic import AfterValidator, BeforeValidator, Field

from events.errors import AmountError, CurrencyError

__all__ = [
    "DEFAULT_MAX_AMOUNT",
    "INT64_MAX",
    "MAX_AMOUNTS",
    "AmountError",
    "CurrencyCode",
    "CurrencyError",
    "MinorUnits",
    "PositiveMinorUnits",
    "currency_exponent",
    "max_amount",
    "normalize_currency",
    "to_minor_units",
]


INT64_MAX: Final = 2**63 - 1
"""Largest amount a read model can hold (Postgres ``bigint``)."""

DEFAULT_MAX_AMOUNT: Final = 99_999_999
"""Stripe's documented maximum: eight digits in the minor unit (999,999.99 USD)."""

MAX_AMOUNTS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "IDR": 999_999_999_999,  # Stripe: twelve digits for the rupiah
    }
)
"""Currencies whose maximum differs from `DEFAULT_MAX_AMOUNT` (data, not code)."""


def max_amount(currency: str) -> int:
    """The largest amount, in minor units, a caller may ask for in ``currency``."""
    return MAX_AMOUNTS.get(currency, DEFAULT_MAX_AMOUNT)


def currency_exponent(code: str) -> int:
    """The ISO 4217 exponent (number of minor-unit digits) of an upper-case code."""
    try:
        exponent = Currency(code).exponent
    except ValueError:
        raise CurrencyError(f"unknown currency {code!r}") from None
    if exponent is None:
        raise CurrencyError(f"currency {code!r} has no minor unit (not a payment currency)")
    return int(exponent)


def normalize_currency(value: Any) -> str:
    """Upper-case a three-letter code and check that ISO 4217 knows it."""
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha():
        raise CurrencyError(f"currency must be a three-letter ISO 4217 code, got {value!r}")
    code = value.upper()
    currency_exponent(code)
    return code


def _whole_minor_units(value: Any) -> Any:
    """Accept an int, or a float/Decimal that is integral (lomi sends 10000.0)."""
    if isinstance(value, bool):
        raise AmountError("amount must be a number of minor units, not a boolean")
    if isinstance(value, float | Decimal):
        if not Decimal(value).is_finite() or Decimal(value) != Decimal(value).to_integral_value():
            raise AmountError(f"amount {value} is finer than the currency's minor unit")
        return int(value)
    return value


CurrencyCode = Annotated[str, BeforeValidator(normalize_currency)]
"""An upper-case ISO 4217 code with a defined minor unit (``"usd"`` becomes ``"USD"``)."""

MinorUnits = Annotated[int, Field(le=INT64_MAX), BeforeValidator(_whole_minor_units)]
"""An integer amount in minor units that a ``bigint`` holds; an integral float is
accepted and converted (a JSON string is not, under strict validation)."""


def _positive(value: int) -> int:
    if value <= 0:
        raise AmountError(f"amount must be greater than zero, got {value}")
    return value


PositiveMinorUnits = Annotated[MinorUnits, AfterValidator(_positive)]


def to_minor_units(major: str | Decimal, currency: str) -> int:
    """Convert a decimal amount in major units ("12.34" USD) to minor units (1234).

    Raises `AmountError` when the amount has more digits than the currency allows
    ("12.345" USD, "10.5" XOF), and `CurrencyError` for an unknown currency.
    """
    exponent = currency_exponent(normalize_currency(currency))
    try:
        amount = Decimal(major)
    except InvalidOperation:
        raise AmountError(f"amount {major!r} is not a decimal number") from None
    if not amount.is_finite():
        raise AmountError(f"amount {major!r} is not a finite number")
    scaled = amount.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise AmountError(
            f"amount {major} is finer than {currency.upper()} allows ({exponent} decimals)"
        )
    return int(scaled)
