"""The orchestrator's one error tree. Every error has a stable ``code`` for replies.

    CheckoutError
    ├── InvalidCommand          validation_failed     bad input; ``errors`` lists fields
    ├── UnknownCommand          unknown_command       no such command type
    ├── SessionNotFound         session_not_found     command for a session never created
    ├── SessionAlreadyExists    session_exists        create for an existing session id
    ├── IllegalTransition       illegal_transition    command not allowed in this state
    │   └── PaymentCompleted    payment_completed     expire/cancel, but the provider took the money
    ├── ConcurrencyConflict     concurrency_conflict  another writer appended first
    ├── CorruptHistory          corrupt_history       stored events do not fold (a bug)
    ├── NoRoute                 no_route              no provider can take it (``explanation``)
    └── InfrastructureError     (not a rejection: the command is retried)
        ├── UnsupportedServer   unsupported_server    nats-server too old / no JetStream
        ├── StreamMisconfigured stream_misconfigured  an existing stream has unsafe flags
        └── StoreUnavailable    store_unavailable     NATS did not answer in time

Lower-layer exceptions (nats-py, pydantic) are translated into these once, at the
boundary that meets them; nothing above that boundary sees them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from events.catalog import RoutingExplanation

__all__ = [
    "CheckoutError",
    "ConcurrencyConflict",
    "CorruptHistory",
    "IllegalTransition",
    "InfrastructureError",
    "InvalidCommand",
    "NoRoute",
    "PaymentCompleted",
    "SessionAlreadyExists",
    "SessionNotFound",
    "StoreUnavailable",
    "StreamMisconfigured",
    "UnknownCommand",
    "UnsupportedServer",
]


class CheckoutError(Exception):
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class InvalidCommand(CheckoutError):
    code = "validation_failed"

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, errors=errors or [])
        self.errors = errors or []


class UnknownCommand(CheckoutError):
    code = "unknown_command"


class SessionNotFound(CheckoutError):
    code = "session_not_found"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"no checkout session {session_id}", session_id=session_id)


class SessionAlreadyExists(CheckoutError):
    code = "session_exists"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"checkout session {session_id} already exists", session_id=session_id)


class IllegalTransition(CheckoutError):
    code = "illegal_transition"

    def __init__(self, session_id: str, state: str, command: str) -> None:
        super().__init__(
            f"cannot {command} checkout session {session_id} while it is {state}",
            session_id=session_id,
            state=state,
            command=command,
        )


class PaymentCompleted(IllegalTransition):
    code = "payment_completed"

    def __init__(self, session_id: str, provider: str) -> None:
        CheckoutError.__init__(
            self,
            f"checkout session {session_id} was paid at {provider}; it cannot be closed",
            session_id=session_id,
            provider=provider,
        )


class ConcurrencyConflict(CheckoutError):
    code = "concurrency_conflict"

    def __init__(self, session_id: str, expected: int, detail: str) -> None:
        super().__init__(
            f"session {session_id} changed since sequence {expected}: {detail}",
            session_id=session_id,
            expected=expected,
        )


class CorruptHistory(CheckoutError):
    code = "corrupt_history"


class NoRoute(CheckoutError):
    code = "no_route"

    def __init__(self, message: str, explanation: RoutingExplanation) -> None:
        super().__init__(message, explanation=explanation.model_dump(mode="json"))
        self.explanation = explanation


class InfrastructureError(CheckoutError):
    """A fault of the servers we depend on, not of the command."""


class UnsupportedServer(InfrastructureError):
    code = "unsupported_server"


class StreamMisconfigured(InfrastructureError):
    code = "stream_misconfigured"


class StoreUnavailable(InfrastructureError):
    code = "store_unavailable"
