"""The write side's errors: the `orchestrator` subtree of the one error tree.

The root, `CheckoutError`, and `SessionNotFound` are `events.errors`' (shared with the read
side) and re-exported here. Every error has a stable ``code`` for replies:

    CheckoutError                 internal_error         the root (events.errors)
    ├── SessionNotFound           session_not_found      command for a session never created
    ├── InvalidCommand            validation_failed      bad input; ``errors`` lists fields
    ├── UnknownCommand            unknown_command        no such command type
    ├── SessionAlreadyExists      session_exists         create for an existing session id
    ├── IllegalTransition         illegal_transition     command not allowed in this state
    │   └── PaymentCompleted      payment_completed      expire/cancel: the provider took it
    ├── IdempotencyKeyReused      idempotency_key_reused the key came with other parameters (400)
    ├── ConcurrencyConflict       concurrency_conflict   another writer appended first
    ├── CorruptHistory            corrupt_history        stored events do not fold (a bug)
    ├── NoRoute                   no_route               no provider can take it (``explanation``)
    ├── InvalidRules              invalid_rules          unusable rules file (routing.rules)
    ├── AllProvidersFailed        all_providers_failed   every candidate failed (create_flow)
    ├── ProviderError             provider_failed        a provider call failed (providers.base)
    │   ├── ProviderUnavailable   provider_unavailable   5xx, timeout, network: retryable
    │   ├── ProviderRejected      provider_rejected      4xx: not retryable
    │   ├── UnsupportedOperation  unsupported_operation  the provider has no such call
    │   └── WebhookRejected       webhook_rejected       bad signature or payload
    ├── CommandRejected           command_rejected       a rejected reply; ``code``: the reply's
    ├── CommandPending            command_pending        queued, no reply in time (client)
    ├── DuplicateCommand          duplicate_command      already held (event_store)
    ├── StreamCopyError           stream_copy_failed     privacy seal-stream cannot go on (privacy)
    ├── SettingsError             invalid_settings       settings contradict each other
    │   ├── NatsSettingsError     invalid_nats_settings  NATS credentials/TLS settings (settings)
    │   │   └── NatsTlsError      invalid_nats_tls       a TLS file is missing or unreadable
    │   └── KeyEncryptionKeyError invalid_key_encryption_key  missing, malformed or wrong KEK
    ├── Unauthenticated           unauthenticated        401: no valid API key (http.auth)
    ├── Forbidden                 forbidden              403: the API key may only read
    ├── PayloadTooLarge           payload_too_large      413: body over its limit (http.limits)
    ├── PayloadTooDeep            payload_too_deep       400: JSON nested too deeply
    ├── ConsoleLoginRequired      console_login_required the console's sign-in page (http.console)
    ├── ConsoleForbidden          console_forbidden      a console action needs a write key
    ├── SimulatorError            simulator_error        in the provider's error shape
    └── InfrastructureError       infrastructure_error   (not a rejection: the command is retried)
        ├── UnsupportedServer     unsupported_server     nats-server too old / no JetStream
        ├── StreamMisconfigured   stream_misconfigured   an existing stream has unsafe flags
        ├── StoreUnavailable      store_unavailable      NATS did not answer in time
        │   └── NatsRefused       nats_refused           credentials or TLS refused (connection)
        ├── KeyStoreUnavailable   key_store_unavailable  Postgres (data keys) did not answer
        ├── EmbeddedServerError   embedded_server_failed an embedded server did not start or stop
        │   └── NotReady          server_not_ready       not answering yet (the probe polls on)
        └── HttpServerError       http_server_failed     uvicorn did not start

Lower-layer exceptions (nats-py, pydantic, httpx, the providers' SDKs) are translated into
these once, at the boundary that meets them; nothing above that boundary sees them.
"""

from __future__ import annotations

from typing import Any

from events.catalog import RoutingExplanation
from events.errors import CheckoutError, SessionNotFound

__all__ = [
    "CheckoutError",
    "ConcurrencyConflict",
    "CorruptHistory",
    "Forbidden",
    "IdempotencyKeyReused",
    "IllegalTransition",
    "InfrastructureError",
    "InvalidCommand",
    "NoRoute",
    "PayloadTooDeep",
    "PayloadTooLarge",
    "PaymentCompleted",
    "SessionAlreadyExists",
    "SessionNotFound",
    "SettingsError",
    "StoreUnavailable",
    "StreamMisconfigured",
    "Unauthenticated",
    "UnknownCommand",
    "UnsupportedServer",
]


class InvalidCommand(CheckoutError):
    code = "validation_failed"

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, errors=errors or [])
        self.errors = errors or []


class UnknownCommand(CheckoutError):
    code = "unknown_command"


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


class IdempotencyKeyReused(CheckoutError):
    """The idempotency key (command id) was first used with other parameters.

    Nothing is appended, and nothing of the first request is named in the answer."""

    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__(
            "this idempotency key was already used with different parameters; "
            "use a new key for a new request"
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


class Unauthenticated(CheckoutError):
    code = "unauthenticated"
    status = 401


class Forbidden(CheckoutError):
    code = "forbidden"
    status = 403


class PayloadTooLarge(CheckoutError):
    code = "payload_too_large"
    status = 413


class PayloadTooDeep(CheckoutError):
    code = "payload_too_deep"
    status = 400


class SettingsError(CheckoutError, ValueError):
    """Settings contradict each other or name unusable files (names only, never values)."""

    code = "invalid_settings"


class InfrastructureError(CheckoutError):
    """A fault of the servers we depend on, not of the command."""

    code = "infrastructure_error"


class UnsupportedServer(InfrastructureError):
    code = "unsupported_server"


class StreamMisconfigured(InfrastructureError):
    code = "stream_misconfigured"


class StoreUnavailable(InfrastructureError):
    code = "store_unavailable"
