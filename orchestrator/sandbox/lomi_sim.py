"""A stateful local lomi.: the checkout-session endpoints and lomi's signed webhooks.

Built on the shared `Simulator` (faults, ``/_sim`` control routes, webhook sender).
Speaks ``POST /checkout-sessions`` (honouring ``Idempotency-Key``: the same key and
body answer the first session again, a different body under a used key is 409),
``GET /checkout-sessions/{id}`` and ``GET /checkout-sessions?status=&limit=&offset=``
(a bare array) behind ``X-API-KEY``; no update, no expire endpoint. Sessions carry every field of
lomi's ``CheckoutSessionResponseDto`` (``apps/docs/openapi.json``, checked by
``tests/contract``), and ``amount`` goes out as a float in the smallest unit (``10000.0``
for 10 000 F CFA), as lomi sends it.

Create takes the fields of lomi's create schema. Like lomi's API (no whitelisting
validation pipe on that route), it accepts a field the schema lacks and ignores it:
``expires_at`` and ``allowed_providers`` change nothing (their names are kept in
`LomiSimulator.ignored_fields` for tests), and every session expires 60 minutes after
creation, lomi's own expiry (read lazily against the clock; lomi sends no webhook for
it). ``line_items`` are lomi's: ``{price_id, quantity, metadata}`` naming a price added
with `add_price`. Create refuses what lomi refuses (400): a currency other than XOF,
USD, EUR; neither ``amount`` nor ``line_items``; neither ``customer_email`` nor
``customer_id``; a fractional amount. Errors have lomi's shape, ``{"error": {code,
message, details}, "request_id"}`` with the codes of its exception filter
(``bad_request``, ``unauthorized``, ``not_found``, ``conflict``).

Drives (also ``POST /_sim/sessions/{id}/pay|fail|expire``):

- pay: status ``completed``, webhook PAYMENT_SUCCEEDED whose data is the transaction
  row as lomi's webhook sender sends it (its ``get_transaction`` shape, sanitised:
  ``transaction_id``, ``gross_amount``, ``net_amount``, ``fee_amount``, ...; no checkout
  session id; kamayakoi/lomi. ``apps/api/src/webhooks``, commit 0add339a). Its
  ``metadata`` echoes the session's (unconfirmed against a real lomi account; the
  simulators' ``echo_metadata`` switch sends it empty). ``legacy_events`` sends the
  older CHECKOUT_COMPLETED with the session as data instead.
- fail: the session stays ``open`` (the customer may try again), webhook PAYMENT_FAILED.
- expire: status ``expired``, no webhook.

Webhooks are signed ``X-Lomi-Signature: hex(HMAC-SHA256(secret, raw_body))`` with
``X-Lomi-Event``; the body is ``{id, event, timestamp, data, lomi_environment}``.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.responses import JSONResponse, Response

from orchestrator.providers.lomi.client import LomiConfig
from orchestrator.providers.lomi.transformers import sign_webhook
from orchestrator.sandbox.simulator import DriveRequest, DriveResult, Simulator, SimulatorError

__all__ = ["LomiSimulator"]

SESSION_TTL = timedelta(minutes=60)
_FEE_RATE = 0.03  # an illustrative fee, so gross and net differ as they do at lomi
CURRENCIES = frozenset({"XOF", "USD", "EUR"})


class _LineItem(BaseModel):
    """lomi's ``LineItemDto``: a catalogue price and a quantity."""

    model_config = ConfigDict(extra="ignore")

    price_id: str
    quantity: float = Field(default=1, ge=1)
    metadata: dict[str, Any] = Field(default_factory=dict)


class _SessionCreate(BaseModel):
    """lomi's create schema (``CreateCheckoutSessionDto``); other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    currency_code: str
    amount: float | None = Field(default=None, ge=0)
    line_items: list[_LineItem] | None = None
    title: str | None = None
    description: str | None = None
    customer_id: str | None = None
    customer_email: str | None = None
    customer_name: str | None = None
    customer_phone: str | None = None
    customer_city: str | None = None
    customer_country: str | None = None
    customer_address: str | None = None
    customer_postal_code: str | None = None
    product_id: str | None = None
    price_id: str | None = None
    subscription_id: str | None = None
    allow_quantity: bool = False
    quantity: float | None = None
    success_url: str | None = None
    cancel_url: str | None = None
    allow_coupon_code: bool = False
    require_billing_address: bool = False
    payment_link_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class LomiSimulator(Simulator):
    provider: ClassVar[str] = "lomi"

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str,
        environment: str = "test",
        **kwargs: Any,
    ) -> None:
        self._api_key = api_key
        self._secret = SecretStr(webhook_secret)
        self.environment = environment
        self.organization_id = str(uuid.uuid4())
        self.legacy_events = False
        self.sessions: dict[str, dict[str, Any]] = {}
        self.prices: dict[str, int] = {}  # price id -> unit amount (smallest unit)
        self.ignored_fields: list[str] = []  # create fields lomi's schema lacks, as sent
        self._idempotency: dict[str, tuple[str, str]] = {}  # key -> (body digest, session id)
        self._counts = dict.fromkeys(
            ("sessions_created", "idempotent_replays", "sessions_paid", "payments_failed"), 0
        )
        self._counts["sessions_expired"] = 0
        super().__init__(**kwargs)

    def add_price(self, price_id: str, unit_amount: int) -> None:
        """Make ``line_items[].price_id`` resolvable (the simulator has no products API)."""
        self.prices[price_id] = unit_amount

    # --- the provider's API ---------------------------------------------------------------

    def add_routes(self, app: FastAPI) -> None:
        auth = [Depends(self._authorize)]
        app.add_exception_handler(RequestValidationError, self._invalid)

        @app.post("/checkout-sessions", status_code=201, dependencies=auth)
        async def create(
            body: _SessionCreate,
            request: Request,
            idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
        ) -> Response:
            self._sweep()
            sent = await request.json()
            self.ignored_fields += sorted(set(sent) - set(_SessionCreate.model_fields))
            session, replayed = self._create(body, str(request.base_url), idempotency_key)
            headers = {"Idempotent-Replayed": "true"} if replayed else {}
            return JSONResponse(session, status_code=201, headers=headers)

        @app.get("/checkout-sessions", dependencies=auth)
        async def list_sessions(
            status: str | None = None,
            limit: Annotated[int, Query(ge=1, le=100)] = 20,
            offset: Annotated[int, Query(ge=0)] = 0,
        ) -> list[dict[str, Any]]:
            # lomi answers the rows themselves, a bare array (its spec and its service)
            self._sweep()
            found = [s for s in self.sessions.values() if status is None or s["status"] == status]
            found.sort(key=lambda session: str(session["created_at"]), reverse=True)
            return [dict(session) for session in found[offset : offset + limit]]

        @app.get("/checkout-sessions/{checkout_session_id}", dependencies=auth)
        async def retrieve(checkout_session_id: str) -> dict[str, Any]:
            self._sweep()
            return self.describe(checkout_session_id)

    def error_response(self, error: SimulatorError) -> Response:
        code = error.provider_code or _error_code(error.status)
        body = {
            "error": {"code": code, "message": error.message, "details": None},
            "request_id": str(uuid.uuid4()),
        }
        return JSONResponse(body, status_code=error.status)

    async def _invalid(self, _request: Request, exc: Exception) -> Response:
        # lomi's filter: a validation pipe's list of messages becomes ``details``
        detail = exc.errors() if isinstance(exc, RequestValidationError) else []
        details = [f"{'.'.join(map(str, e['loc'][1:])) or 'body'}: {e['msg']}" for e in detail]
        body = {
            "error": {"code": "bad_request", "message": "Validation failed", "details": details},
            "request_id": str(uuid.uuid4()),
        }
        return JSONResponse(body, status_code=400)

    async def _authorize(self, x_api_key: Annotated[str | None, Header()] = None) -> None:
        if x_api_key is None or not secrets.compare_digest(x_api_key, self._api_key):
            raise SimulatorError(401, "Invalid or missing API key")

    def _create(
        self, body: _SessionCreate, base_url: str, key: str | None
    ) -> tuple[dict[str, Any], bool]:
        digest = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
        if key is not None and key in self._idempotency:
            first_digest, session_id = self._idempotency[key]
            if first_digest != digest:
                raise SimulatorError(409, "Idempotency-Key reused with a different body")
            self._counts["idempotent_replays"] += 1
            return dict(self.sessions[session_id]), True
        session = self._new_session(body, base_url)
        if key is not None:
            self._idempotency[key] = (digest, session["checkout_session_id"])
        return dict(session), False

    def _new_session(self, body: _SessionCreate, base_url: str) -> dict[str, Any]:
        currency, amount = _validate(body, self.prices)
        now = self._now()
        session_id = str(uuid.uuid4())
        session: dict[str, Any] = {
            "checkout_session_id": session_id,
            "organization_id": self.organization_id,
            "created_by": self.organization_id,
            "created_at": _iso(now),
            "updated_at": _iso(now),
            "expires_at": _iso(now + SESSION_TTL),  # lomi's own; a sent expires_at is ignored
            "status": "open",
            "environment": self.environment,
            "amount": float(amount),  # lomi's wire type: a float in the smallest unit
            "currency_code": currency,
            "quantity": float(body.quantity or 1),
            "title": body.title,
            "description": body.description,
            "customer_email": body.customer_email,
            "customer_id": body.customer_id,
            "customer_name": body.customer_name,
            "customer_phone": body.customer_phone,
            "success_url": body.success_url,
            "cancel_url": body.cancel_url,
            "metadata": dict(body.metadata),
            "allow_coupon_code": body.allow_coupon_code,
            "require_billing_address": body.require_billing_address,
            "allow_quantity": body.allow_quantity,
            "product_id": body.product_id,
            "price_id": body.price_id,
            "subscription_id": body.subscription_id,
            "installment_plan_id": None,
            "payment_link_id": body.payment_link_id,
            "payment_request_id": None,
            "is_pos": False,
            "is_spi": False,
            "spi_account_number": None,
            "spi_qr_code_id": None,
            "qr_code_data": None,
            "qr_code_type": None,
            "checkout_url": f"{base_url.rstrip('/')}/checkout/{session_id}",
        }
        self.sessions[session_id] = session
        self._counts["sessions_created"] += 1
        return session

    # --- drives ---------------------------------------------------------------------------

    async def pay(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult:
        session = self._open(session_id)
        self._set_status(session, "completed")
        self._counts["sessions_paid"] += 1
        if self.legacy_events:
            sent = await self._send("CHECKOUT_COMPLETED", dict(session), drive)
        else:
            sent = await self._send(
                "PAYMENT_SUCCEEDED", self._transaction(session, "completed"), drive
            )
        return DriveResult(session=dict(session), webhooks=[sent])

    async def fail(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult:
        session = self._open(session_id)
        self._counts["payments_failed"] += 1
        sent = await self._send("PAYMENT_FAILED", self._transaction(session, "failed"), drive)
        return DriveResult(session=dict(session), webhooks=[sent])

    async def expire(
        self,
        session_id: str,
        drive: DriveRequest | None = None,  # noqa: ARG002 - lomi sends no webhook to time
    ) -> DriveResult:
        self._expire(self._open(session_id))
        return DriveResult(session=self.describe(session_id), webhooks=[])

    def describe(self, session_id: str) -> dict[str, Any]:
        session = self.sessions.get(session_id)
        if session is None:
            raise SimulatorError(404, f"Checkout session {session_id} not found")
        return dict(session)

    def stats(self) -> dict[str, int]:
        return dict(self._counts)

    def adapter_config(self, **overrides: Any) -> LomiConfig:
        """A `LomiConfig` pointing the real adapter at this (started) simulator."""
        fields: dict[str, Any] = {
            "api_key": SecretStr(self._api_key),
            "webhook_secret": self._secret,
            "base_url": self.base_url,
        }
        return LomiConfig(**(fields | overrides))

    def _open(self, session_id: str) -> dict[str, Any]:
        self._sweep()
        session = self.sessions.get(session_id)
        if session is None:
            raise SimulatorError(404, f"Checkout session {session_id} not found")
        if session["status"] != "open":
            raise SimulatorError(409, f"Checkout session is {session['status']}")
        return session

    def _sweep(self) -> None:
        now = _iso(self._now())
        for session in self.sessions.values():
            if session["status"] == "open" and session["expires_at"] <= now:
                self._expire(session)

    def _expire(self, session: dict[str, Any]) -> None:
        self._set_status(session, "expired")
        self._counts["sessions_expired"] += 1

    def _set_status(self, session: dict[str, Any], status: str) -> None:
        session["status"] = status
        session["updated_at"] = _iso(self._now())

    def _transaction(self, session: Mapping[str, Any], status: str) -> dict[str, Any]:
        """lomi's transaction row, minus what its sender strips (fee_structure_id, is_pos...)."""
        gross = float(session["amount"])
        fee = float(math.floor(gross * _FEE_RATE))
        now = _iso(self._now())
        return {
            "transaction_id": str(uuid.uuid4()),
            "organization_id": self.organization_id,
            "customer_id": session.get("customer_id") or str(uuid.uuid4()),
            "status": status,
            "transaction_type": "payment",
            "description": session.get("title") or "Checkout payment",
            "gross_amount": gross,
            "fee_amount": fee,
            "net_amount": gross - fee,
            "fee_name": "Wave",
            "fee_category": "transaction",
            "fee_subcategory": "mobile_money",
            "currency_code": session["currency_code"],
            "provider_code": "WAVE",
            "payment_method_code": "MOBILE_MONEY",
            "product_id": session.get("product_id"),
            "subscription_id": session.get("subscription_id"),
            "metadata": dict(session["metadata"]),
            "created_at": session["created_at"],
            "updated_at": now,
        }

    async def _send(
        self, event: str, data: Mapping[str, Any], drive: DriveRequest | None
    ) -> dict[str, Any]:
        event_id = f"evt_{uuid.uuid4().hex}"
        payload = {
            "id": event_id,
            "event": event,
            "timestamp": _iso(self._now()),
            "data": dict(data),
            "lomi_environment": self.environment,
        }
        body = json.dumps(payload).encode()

        def sign(raw: bytes) -> Mapping[str, str]:
            return {"X-Lomi-Signature": sign_webhook(self._secret, raw), "X-Lomi-Event": event}

        background = bool(drive and drive.background)
        return (await self.emit(event_id, event, body, sign, background=background)).to_json()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=UTC)


_ERROR_CODES = {  # lomi's JsonExceptionFilter (mapStatusToCode)
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    429: "rate_limit_exceeded",
    503: "service_unavailable",
}


def _error_code(status: int) -> str:
    return _ERROR_CODES.get(status, "internal_error" if status >= 500 else "error")


def _validate(body: _SessionCreate, prices: Mapping[str, int]) -> tuple[str, int]:
    currency = body.currency_code.upper()
    if currency not in CURRENCIES:
        raise SimulatorError(400, f"currency_code must be one of XOF, USD, EUR, not {currency}")
    if body.customer_email is None and body.customer_id is None:
        raise SimulatorError(400, "customer_email or customer_id is required")
    if body.amount is not None:
        amount = body.amount
    elif body.line_items:
        unknown = [item.price_id for item in body.line_items if item.price_id not in prices]
        if unknown:
            raise SimulatorError(400, f"Price {unknown[0]} not found")
        amount = sum(prices[item.price_id] * item.quantity for item in body.line_items)
    else:
        raise SimulatorError(400, "amount or line_items is required")
    if not math.isfinite(amount) or not float(amount).is_integer():
        raise SimulatorError(400, "amount must be a whole number of the smallest currency unit")
    return currency, int(amount)


def _iso(moment: datetime) -> str:
    # Fixed width (always microseconds), so these strings sort and compare as times.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
