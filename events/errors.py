"""The project's one error tree: its root, and the errors of the event contract.

Every exception that `events`, `orchestrator` and `projections` raise on purpose descends
from `CheckoutError` and has a stable ``code`` (the string replies and HTTP bodies carry)
and an HTTP ``status`` (what the HTTP boundary answers when the error reaches it). The
subtrees live beside the code that raises them and are drawn in full here:

    CheckoutError                     internal_error          500
    ├── SessionNotFound               session_not_found       404  no such session (at that instant)
    ├── EventContractError            invalid_value           400  (ValueError: pydantic validators)
    │   ├── CurrencyError             invalid_currency        400  not an ISO 4217 currency
    │   ├── AmountError               invalid_amount          400  not whole minor units > 0
    │   ├── DecodeError               undecodable_event       500  a stored message is not an event
    │   └── UnknownEventError         unknown_event           500  a version this code cannot read
    ├── orchestrator.errors (the write side; drawn in that module)
    │   ├── InvalidCommand, UnknownCommand, SessionAlreadyExists, IllegalTransition,
    │   │   PaymentCompleted, ConcurrencyConflict, CorruptHistory, NoRoute, InvalidRules,
    │   │   AllProvidersFailed, ProviderError (+4), CommandRejected, CommandPending,
    │   │   DuplicateCommand, SettingsError (+NatsSettingsError, NatsTlsError),
    │   └── InfrastructureError (+UnsupportedServer, StreamMisconfigured, StoreUnavailable,
    │       NatsRefused, EmbeddedServerError, HttpServerError), SimulatorError
    └── projections.errors (the read side; drawn in that module)
        └── ProjectionError: QueryError (+InvalidQuery, ConsistencyTimeout, QueryUnavailable),
            MigrationError, RebuildError, Unapplicable

Lower-layer exceptions (nats-py, asyncpg, httpx, the providers' SDKs, pydantic) are
translated into these once, at the boundary that meets them. `tests/unit/test_error_tree.py`
walks the packages and fails on an exception class outside this tree or without a code.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AmountError",
    "CheckoutError",
    "CurrencyError",
    "DecodeError",
    "EventContractError",
    "SessionNotFound",
    "UnknownEventError",
]


class CheckoutError(Exception):
    """The root. ``details`` are the error's fields, also rendered by `to_dict`."""

    code: str = "internal_error"  # an instance may carry a more precise one (CommandRejected)
    status: int = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class SessionNotFound(CheckoutError):
    """A command or a query named a session that does not exist (at that instant)."""

    code = "session_not_found"
    status = 404

    def __init__(self, session_id: str, message: str | None = None) -> None:
        super().__init__(message or f"no checkout session {session_id}", session_id=session_id)
        self.session_id = session_id


class EventContractError(CheckoutError, ValueError):
    """A value breaks the event contract. A ValueError too, so pydantic validators report it."""

    code = "invalid_value"
    status = 400


class CurrencyError(EventContractError):
    """The code is not an ISO 4217 currency that has a minor unit."""

    code = "invalid_currency"


class AmountError(EventContractError):
    """The amount is not a positive, whole number of the currency's minor unit."""

    code = "invalid_amount"


class DecodeError(EventContractError):
    """A stored message is not a readable event (unknown type, bad payload or headers)."""

    code = "undecodable_event"
    status = 500


class UnknownEventError(EventContractError):
    """The stored type or version is one this code cannot read."""

    code = "unknown_event"
    status = 500
