"""The write side over HTTP: session commands and provider webhooks, added to the query app.

    POST /v1/checkout-sessions                 create (body = the create command); 201
    POST /v1/checkout-sessions/{id}/expire     202/200
    POST /v1/checkout-sessions/{id}/cancel
    POST /v1/webhooks/{provider}               signed provider notifications

Session commands go through the same durable NATS command path as every other client
(an ``Idempotency-Key`` header becomes the command id, bound to the request's
parameters). Rejections keep their stable code: 422 ``validation_failed``/``no_route``,
400 ``idempotency_key_reused`` (the key came before with other parameters; 400, as
Stripe answers, because only a new key helps, where our 409s are about the session's
state), 404 ``session_not_found``, 409
``session_exists``/``illegal_transition``/``payment_completed``, 502
``all_providers_failed``/``provider_rejected``, 503 ``provider_unavailable``; a command queued
without a reply in time answers 202 with its command id (resend it with the same key).

A webhook is verified in its provider's scheme, stored in the inbox, and only then
answered 200 (``{"duplicate": true}`` for a provider event id seen before). A forged,
stale or future-dated one gets 400 ``webhook_rejected`` and nothing is stored.

Command routes declare the ``write`` key they need (`orchestrator.http.auth`); webhooks
declare none. Bodies are read through `orchestrator.http.limits.limited_body`, after auth.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse

from events.values import Provider
from orchestrator.client import CheckoutClient, CommandPending, CommandRejected
from orchestrator.domain.commands import CreateCheckoutSession
from orchestrator.errors import StoreUnavailable
from orchestrator.http.auth import ApiKeyAuth
from orchestrator.http.limits import BODY_RESPONSES, json_body, limited_body
from orchestrator.providers.base import PaymentProvider, WebhookRejected
from orchestrator.webhooks.inbox import WebhookInbox

__all__ = ["add_command_routes", "add_webhook_routes"]

_STATUS = {
    "validation_failed": 422,
    "no_route": 422,
    "unknown_command": 400,
    # as Stripe's idempotency_error: the request must change (a new key), a retry never helps
    "idempotency_key_reused": 400,
    "session_not_found": 404,
    "session_exists": 409,
    "illegal_transition": 409,
    "concurrency_conflict": 409,
    "payment_completed": 409,
    "all_providers_failed": 502,
    "provider_rejected": 502,
    "provider_unavailable": 503,
}

# every typed answer of the command routes, in the served OpenAPI
_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": ", ".join(sorted(c for c, s in _STATUS.items() if s == status))
        or "queued: accepted, not handled yet"
    }
    for status in sorted({*_STATUS.values(), 202})
}


def _merged(*answers: Mapping[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """Documented answers of several origins; one status's descriptions are joined."""
    merged: dict[int | str, dict[str, Any]] = {}
    for documented in answers:
        for status, answer in documented.items():
            if status in merged:
                text = f"{merged[status]['description']}; {answer['description']}"
                merged[status] = {**merged[status], "description": text}
            else:
                merged[status] = answer
    return merged


_WEBHOOK_RESPONSES = _merged(
    {400: {"description": "signature, timestamp or body rejected"}},
    {404: {"description": "provider_not_configured"}},
    BODY_RESPONSES,
)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=128,
        description=(
            "The command id, bound to this request's parameters (a hash of the validated "
            "body). A retry with the same key and parameters gets the first result "
            '("duplicate": true), however late; the same key with other parameters is 400 '
            "idempotency_key_reused and appends nothing. A request refused by validation "
            "stores nothing: its key can be used for the corrected one."
        ),
    ),
]
Body = Annotated[bytes, Depends(limited_body)]


def _inlined(schema: Any, definitions: Mapping[str, Any]) -> Any:
    """``schema`` with its ``$ref``s to ``$defs`` replaced by the definitions (the models
    are not recursive), so it stands alone inside the OpenAPI document."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inlined(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {k: _inlined(v, definitions) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inlined(item, definitions) for item in schema]
    return schema


def create_body_schema() -> dict[str, Any]:
    """The JSON schema of a create body: the `create` command without what the server sets
    (``type``, ``at``); ``session_id`` optional (derived from the key when absent)."""
    schema = CreateCheckoutSession.model_json_schema()
    body: dict[str, Any] = _inlined(schema, schema.get("$defs", {}))
    for stamped in ("type", "at"):
        body["properties"].pop(stamped)
    body["required"] = [
        f for f in body.get("required", []) if f not in {"type", "at", "session_id"}
    ]
    return body


def _error(status: int, code: str, message: str, **details: Any) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, **details}, status_code=status)


async def _send(
    client: CheckoutClient,
    command_type: str,
    payload: dict[str, Any],
    command_id: str | None,
    success: int,
) -> JSONResponse:
    try:
        reply = await client.send(command_type, payload, command_id=command_id)
    except CommandRejected as rejected:
        return JSONResponse(rejected.error, status_code=_STATUS.get(rejected.code, 500))
    except CommandPending as pending:
        return _error(202, "queued", str(pending), command_id=pending.command_id)
    return JSONResponse(reply.model_dump(mode="json", exclude_none=True), status_code=success)


def _json_object(body: bytes, *, required: bool = True) -> dict[str, Any] | JSONResponse:
    """The body as a JSON object, or the 422 ``validation_failed`` answer saying why not."""
    if not body.strip() and not required:
        return {}
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        parsed = None
    if not isinstance(parsed, dict):
        message = "the body must be a JSON object"
        errors = [{"loc": ["body"], "msg": message}]
        return _error(422, "validation_failed", message, errors=errors)
    return parsed


def add_command_routes(  # noqa: C901 - one nested function per route
    app: FastAPI, client: CheckoutClient, auth: ApiKeyAuth
) -> None:
    commands = APIRouter(
        tags=["commands"],
        responses=_merged(_RESPONSES, BODY_RESPONSES, auth.responses),
        dependencies=auth.write,
    )

    @commands.post(
        "/v1/checkout-sessions",
        status_code=201,
        openapi_extra=json_body("the `create` command", schema=create_body_schema()),
    )
    async def create_session(body: Body, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Create a checkout session; the reply says where the customer pays.

        The body is validated strictly (JSON types as given, no coercion): amounts within
        the currency's maximum (99,999,999 minor units for most), no control characters in
        any string, a real email, an assigned ISO 3166-1 country; a refusal is 422
        ``validation_failed`` with each field's ``loc``, and nothing is stored."""
        payload = _json_object(body)
        if isinstance(payload, JSONResponse):
            return payload
        return await _send(client, "create", payload, idempotency_key, 201)

    @commands.post("/v1/checkout-sessions/{session_id}/expire")
    async def expire_session(
        session_id: str, idempotency_key: IdempotencyKey = None
    ) -> JSONResponse:
        payload = {"session_id": session_id, "reason": "merchant"}
        return await _send(client, "expire", payload, idempotency_key, 200)

    @commands.post(
        "/v1/checkout-sessions/{session_id}/cancel",
        openapi_extra=json_body('optional: `{"reason": ...}`', required=False),
    )
    async def cancel_session(
        session_id: str, body: Body, idempotency_key: IdempotencyKey = None
    ) -> JSONResponse:
        parsed = _json_object(body, required=False)
        if isinstance(parsed, JSONResponse):
            return parsed
        payload = {"session_id": session_id, "reason": parsed.get("reason")}
        return await _send(client, "cancel", payload, idempotency_key, 200)

    @commands.post(
        "/v1/customers/forget",
        tags=["privacy"],
        openapi_extra=json_body('`{"email": ...}` or `{"customer_reference": ...}`'),
    )
    async def forget_customer(body: Body, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Forget a customer: the data subject's key is destroyed, its personal data in
        events, read models and stored webhooks becomes unreadable (docs/privacy.md).

        Idempotent; an unknown customer is ``not_found`` and changes nothing. The reply
        lists the provider sessions the customer's data is still held in: erase it there."""
        payload = _json_object(body)
        if isinstance(payload, JSONResponse):
            return payload
        try:
            result = await client.forget(payload, request_id=idempotency_key)
        except CommandRejected as rejected:
            return JSONResponse(rejected.error, status_code=_STATUS.get(rejected.code, 500))
        except CommandPending as pending:  # it may still finish; repeating it is safe
            return _error(202, "queued", str(pending), command_id=pending.command_id)
        except StoreUnavailable as exc:
            return _error(503, exc.code, exc.message)
        return JSONResponse(result.model_dump(mode="json"), status_code=200)

    app.include_router(commands)


def add_webhook_routes(
    app: FastAPI,
    providers: Mapping[Provider, PaymentProvider],
    inbox: WebhookInbox,
    *,
    clock: Callable[[], datetime],
    on_stored: Callable[[], None] = lambda: None,
) -> None:
    @app.post("/v1/webhooks/{provider}", tags=["webhooks"], responses=_WEBHOOK_RESPONSES)
    async def receive_webhook(provider: Provider, request: Request, body: Body) -> JSONResponse:
        adapter = providers.get(provider)
        if adapter is None:
            return _error(404, "provider_not_configured", f"{provider.value} is not configured")
        headers = dict(request.headers)
        received_at = clock()
        try:
            event = adapter.verify_webhook(headers, body, received_at)
        except WebhookRejected as exc:
            return _error(400, exc.code, exc.message)
        row = await inbox.store(provider.value, event.event_id, headers, body, received_at)
        on_stored()
        return JSONResponse({"received": True, "duplicate": row is None})
