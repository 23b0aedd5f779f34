"""The AsyncAPI 3.0 document of the NATS surface, generated from the code with FastStream.

Commands (received by the orchestrator), their replies, and the session events (sent
by the orchestrator) are declared on a documentation-only broker that never connects;
payload schemas come from the same pydantic models the code validates with, so the
document cannot drift from what the orchestrator accepts. ``checkout-orchestrator
asyncapi`` prints it; ``docs/asyncapi.json`` is the committed copy (a test compares).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel

from events.catalog import EVENT_TYPES
from orchestrator.domain.commands import command_models
from orchestrator.jetstream.streams import StreamLayout
from orchestrator.jetstream.wire import (
    COMMAND_ID,
    CORRELATION_ID,
    REPLY_TO,
    AcceptedReply,
    RejectedReply,
)
from orchestrator.privacy.forgetting import ForgetCustomer, ForgetResult

__all__ = ["asyncapi_document", "asyncapi_json"]

_STAMPED = ("type", "at")  # set by the orchestrator, never sent by a client

_DESCRIPTION = f"""Commands are published to JetStream (stream CHECKOUT_COMMANDS, a work queue)
with headers `{COMMAND_ID}` (required, idempotency key), `{CORRELATION_ID}` and `{REPLY_TO}`
(an inbox for the reply). Events are stored in stream CHECKOUT, one subject per event:
`checkout.events.<p>.<session_id>.<type>`, p = fnv1a32(session_id) % partitions."""


def _documented(model: type[BaseModel]) -> Callable[..., Coroutine[Any, Any, None]]:
    async def handler(body: Any) -> None:  # documentation only: never consumes
        del body

    handler.__annotations__ = {"body": model, "return": None}
    return handler


def _strip_stamped(document: dict[str, Any]) -> dict[str, Any]:
    commands = {model.__name__ for model in command_models()}
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        if name in commands:
            for field in _STAMPED:
                schema.get("properties", {}).pop(field, None)
                if field in schema.get("required", []):
                    schema["required"].remove(field)
    return document


def asyncapi_document(layout: StreamLayout | None = None) -> dict[str, Any]:
    layout = layout or StreamLayout()
    broker = NatsBroker("nats://127.0.0.1:4222")
    for model in command_models():
        command_type = model.model_fields["type"].default
        broker.subscriber(
            f"{layout.commands_prefix}.{command_type}",
            title=f"command {command_type}",
            description=(model.__doc__ or "").strip() or None,
        )(_documented(model))
    for event_type, event_model in EVENT_TYPES.items():
        broker.publisher(
            f"{layout.events_prefix}.{{partition}}.{{session_id}}.{event_type}",
            schema=event_model,
            title=f"event {event_type}",
            description=(event_model.__doc__ or "").strip() or None,
        )
    broker.subscriber(
        layout.forget_subject,
        title="command forget_customer",
        description="Core NATS request/reply (in no stream, so the email asked for is never "
        f"stored); header `{COMMAND_ID}`. Replies with the forget result or a rejection "
        "(docs/privacy.md).",
    )(_documented(ForgetCustomer))
    broker.publisher(
        "{reply inbox of forget_customer}", schema=ForgetResult, title="reply forget_customer"
    )
    for reply in (AcceptedReply, RejectedReply):
        broker.publisher(
            "{Checkout-Reply-To}",
            schema=reply,
            title=f"reply {reply.model_fields['status'].default}",
        )
    spec = AsyncAPI(
        broker,
        title="checkout-orchestrator NATS surface",
        version="1",
        description=_DESCRIPTION,
        schema_version="3.0.0",
    ).to_specification()
    return _strip_stamped(json.loads(spec.to_json()))


def asyncapi_json(layout: StreamLayout | None = None) -> str:
    """The document as stable JSON (sorted keys), as committed in ``docs/asyncapi.json``."""
    return json.dumps(asyncapi_document(layout), indent=2, sort_keys=True) + "\n"
