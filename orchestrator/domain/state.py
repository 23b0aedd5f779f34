"""A checkout session's state as a tagged union, folded from its events.

    Absent ─create─▶ Requested ─route─▶ Routed ─opened─▶ Opened ─▶ Processing
                                         │ ▲ call failed,          │
                                         │ └─ fallback             ▼
                                         ├─ call failed, none ─▶ Failed
                                         └─────complete─────▶ Completed(unpaid|paid)
    Completed(unpaid) ─async result─▶ Completed(paid) | Failed
    Requested / Routed / Opened ─expire─▶ Expired;  ─cancel─▶ Canceled

Every state after `Absent` keeps the `CheckoutRequested` event that created it, so the
requested amount cannot change after creation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from events.catalog import CheckoutRequested
from events.values import PaymentStatus, Provider

__all__ = [
    "Absent",
    "Canceled",
    "Completed",
    "Expired",
    "Failed",
    "Live",
    "Opened",
    "Processing",
    "Requested",
    "Routed",
    "State",
    "is_terminal",
]


@dataclass(frozen=True, slots=True)
class Absent:
    kind: ClassVar[str] = "absent"


@dataclass(frozen=True, slots=True)
class Requested:
    kind: ClassVar[str] = "requested"
    request: CheckoutRequested


@dataclass(frozen=True, slots=True)
class Routed:
    kind: ClassVar[str] = "routed"
    request: CheckoutRequested
    provider: Provider
    attempt: int


@dataclass(frozen=True, slots=True)
class Opened:
    kind: ClassVar[str] = "open"
    request: CheckoutRequested
    provider: Provider
    attempt: int
    provider_session_id: str


@dataclass(frozen=True, slots=True)
class Processing:
    kind: ClassVar[str] = "processing"
    request: CheckoutRequested
    provider: Provider
    attempt: int
    provider_session_id: str


@dataclass(frozen=True, slots=True)
class Completed:
    kind: ClassVar[str] = "completed"
    request: CheckoutRequested
    provider: Provider
    attempt: int
    provider_session_id: str | None
    payment_status: PaymentStatus


@dataclass(frozen=True, slots=True)
class Failed:
    kind: ClassVar[str] = "failed"
    request: CheckoutRequested
    cause: Literal["no_provider", "async_payment"]


@dataclass(frozen=True, slots=True)
class Expired:
    kind: ClassVar[str] = "expired"
    request: CheckoutRequested


@dataclass(frozen=True, slots=True)
class Canceled:
    kind: ClassVar[str] = "canceled"
    request: CheckoutRequested


Live = Requested | Routed | Opened | Processing | Completed | Failed | Expired | Canceled
State = Absent | Live


def is_terminal(state: State) -> bool:
    if isinstance(state, Completed):
        return state.payment_status is not PaymentStatus.UNPAID
    return isinstance(state, Failed | Expired | Canceled)
