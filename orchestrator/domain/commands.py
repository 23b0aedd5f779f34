"""Commands: what a caller (or a webhook, or the router) asks a session to do.

Each is a frozen pydantic model with a literal ``type``. Time (``at``) and ids
(``session_id``) come in on the command, so `decider.decide` stays pure. The
orchestrator stamps ``at`` when it receives a command; callers do not send it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, model_validator

from events.catalog import RoutingExplanation, UiMode
from events.money import CurrencyCode, PositiveMinorUnits
from events.values import (
    AbsoluteUrl,
    Amounts,
    Customer,
    LineItem,
    Metadata,
    Mode,
    PaymentStatus,
    Provider,
    ProviderReferences,
    RequestedAmount,
    SessionUrls,
    UtcDatetime,
    Value,
)

__all__ = [
    "COMMAND_TYPES",
    "CancelCheckoutSession",
    "Command",
    "CompleteCheckoutSession",
    "CreateCheckoutSession",
    "ExpireCheckoutSession",
    "MarkProcessing",
    "RecordAsyncPaymentResult",
    "RecordProviderCallFailed",
    "RecordProviderSessionOpened",
    "RecordRouting",
    "command_adapter",
    "command_models",
]

SessionId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class CommandBase(Value):
    session_id: SessionId
    at: UtcDatetime


class CreateCheckoutSession(CommandBase):
    """Open a checkout session: an amount or line items in one currency.

    ``amount`` is in minor units (1234 = 12.34 USD). Payment and subscription modes
    need an amount or line items; setup mode (save a payment method) takes neither.
    """

    type: Literal["create"] = "create"
    mode: Mode = Mode.PAYMENT
    currency: CurrencyCode
    amount: PositiveMinorUnits | None = None
    line_items: tuple[LineItem, ...] = Field(default=(), max_length=100)
    customer: Customer = Customer()
    urls: SessionUrls = SessionUrls()
    ui_mode: UiMode = "hosted"
    metadata: Metadata = Field(default_factory=dict)
    client_reference_id: str | None = Field(default=None, max_length=200)
    expires_at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _amount_fits_mode(self) -> CreateCheckoutSession:
        priced = self.amount is not None or bool(self.line_items)
        if self.mode is Mode.SETUP and priced:
            raise ValueError("setup mode saves a payment method and takes no amount")
        if self.mode is not Mode.SETUP and not priced:
            raise ValueError(f"{self.mode.value} mode needs an amount or line items")
        if self.expires_at is not None and self.expires_at <= self.at:
            raise ValueError("expires_at must be in the future")
        self.requested_amount()  # the consistency checks live on RequestedAmount
        return self

    def requested_amount(self) -> RequestedAmount:
        return RequestedAmount(
            currency=self.currency, amount=self.amount, line_items=self.line_items
        )


class RecordRouting(CommandBase):
    type: Literal["record_routing"] = "record_routing"
    provider: Provider
    explanation: RoutingExplanation


class RecordProviderSessionOpened(CommandBase):
    type: Literal["record_provider_session_opened"] = "record_provider_session_opened"
    provider: Provider
    provider_session_id: str = Field(min_length=1, max_length=255)
    checkout_url: AbsoluteUrl | None = None
    expires_at: UtcDatetime | None = None
    livemode: bool = False
    has_client_secret: bool = False
    amounts: Amounts | None = None
    references: ProviderReferences = ProviderReferences()


class RecordProviderCallFailed(CommandBase):
    type: Literal["record_provider_call_failed"] = "record_provider_call_failed"
    provider: Provider
    error_code: str = Field(min_length=1, max_length=100)
    message: str = Field(max_length=1000)
    retryable: bool = False
    fallback: Provider | None = None


class MarkProcessing(CommandBase):
    type: Literal["mark_processing"] = "mark_processing"
    provider_status: str | None = Field(default=None, max_length=100)


class CompleteCheckoutSession(CommandBase):
    type: Literal["complete"] = "complete"
    payment_status: PaymentStatus
    amounts: Amounts | None = None
    customer: Customer | None = None
    references: ProviderReferences = ProviderReferences()


class RecordAsyncPaymentResult(CommandBase):
    type: Literal["record_async_payment_result"] = "record_async_payment_result"
    succeeded: bool
    reason: str | None = Field(default=None, max_length=1000)


class ExpireCheckoutSession(CommandBase):
    type: Literal["expire"] = "expire"
    reason: Literal["provider", "sweeper", "merchant"] = "merchant"


class CancelCheckoutSession(CommandBase):
    type: Literal["cancel"] = "cancel"
    reason: str | None = Field(default=None, max_length=1000)


Command = Annotated[
    CreateCheckoutSession
    | RecordRouting
    | RecordProviderSessionOpened
    | RecordProviderCallFailed
    | MarkProcessing
    | CompleteCheckoutSession
    | RecordAsyncPaymentResult
    | ExpireCheckoutSession
    | CancelCheckoutSession,
    Field(discriminator="type"),
]

command_adapter: TypeAdapter[Command] = TypeAdapter(Command)

def command_models() -> tuple[type[CommandBase], ...]:
    return (
        CreateCheckoutSession,
        RecordRouting,
        RecordProviderSessionOpened,
        RecordProviderCallFailed,
        MarkProcessing,
        CompleteCheckoutSession,
        RecordAsyncPaymentResult,
        ExpireCheckoutSession,
        CancelCheckoutSession,
    )


COMMAND_TYPES: frozenset[str] = frozenset(
    model.model_fields["type"].default for model in command_models()
)
