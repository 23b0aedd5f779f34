"""What a verified provider notification asks of a session, as a command (pure).

Which session it is about is decided before (`orchestrator.webhooks.resolution`: the
provider's own ids first, our echoed metadata second). A notification that names no
session of ours yields `Unresolved`: the inbox keeps it and reconciliation settles the
session from the provider's own state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from orchestrator.providers.base import ProviderSession, WebhookEvent

__all__ = [
    "CommandToSend",
    "Ignored",
    "Translation",
    "Unresolved",
    "translate",
    "webhook_command_id",
]


@dataclass(frozen=True, slots=True)
class CommandToSend:
    command_type: str
    payload: dict[str, Any]
    command_id: str


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: str


@dataclass(frozen=True, slots=True)
class Unresolved:
    """We cannot tell which of our sessions this is about (yet)."""

    reason: str


Translation = CommandToSend | Ignored | Unresolved


def webhook_command_id(provider: str, event_id: str) -> str:
    """A stable command id per provider event: the same webhook is one command, always."""
    digest = hashlib.sha256(f"{provider}\x00{event_id}".encode()).hexdigest()[:32]
    return f"wh-{provider}-{digest}"


def _completion(session: ProviderSession) -> dict[str, Any]:
    payment_status = session.payment_status
    return {
        "payment_status": payment_status.value,
        "amounts": session.amounts.model_dump(mode="json") if session.amounts else None,
        "customer": session.customer.model_dump(mode="json"),
        "references": session.references.model_dump(mode="json"),
    }


def _completion_of(event: WebhookEvent) -> dict[str, Any] | None:
    if event.session is not None:
        return _completion(event.session)
    if event.amounts is not None:
        # a payment row (lomi's PAYMENT_SUCCEEDED): paid, for what the payment says it took
        return {"payment_status": "paid", "amounts": event.amounts.model_dump(mode="json")}
    return None


def translate(event: WebhookEvent, session_id: str | None) -> Translation:
    """``session_id`` is ours, when known (from the provider's echo or a lookup)."""
    if event.kind == "ignored":
        return Ignored(f"{event.provider_type} does not change a session")
    if event.kind == "payment_failed":
        # an attempt failed; the customer may try again while the session is open
        return Ignored(f"{event.provider_type}: a payment attempt failed, session still open")
    if session_id is None:
        return Unresolved(f"{event.provider_type} names no session of ours")
    payload: dict[str, Any] = {"session_id": session_id}
    command_type: str
    match event.kind:
        case "completed":
            completion = _completion_of(event)
            if completion is None:
                return Unresolved(f"{event.provider_type} carries no session: poll it")
            command_type = "complete"
            payload |= completion
        case "processing":
            command_type = "mark_processing"
            payload["provider_status"] = event.provider_type[:100]
        case "expired":
            command_type = "expire"
            payload["reason"] = "provider"
        case "async_payment_succeeded":
            command_type = "record_async_payment_result"
            payload["succeeded"] = True
        case "async_payment_failed":
            command_type = "record_async_payment_result"
            payload |= {"succeeded": False, "reason": event.provider_type}
    return CommandToSend(
        command_type, payload, webhook_command_id(event.provider.value, event.event_id)
    )
