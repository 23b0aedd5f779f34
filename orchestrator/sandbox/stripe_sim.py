"""A stateful simulator of Stripe Checkout's API, good enough for the real ``stripe`` SDK.

Speaks, form-encoded in and JSON out, with Bearer auth and Stripe's error shape
(``{"error": {"type", "message", "code", "param"}}`` and a ``Request-Id`` header)::

    POST /v1/checkout/sessions                     create (``line_items[0][price_data][...]``)
    GET  /v1/checkout/sessions                     list, newest first (limit, starting_after,
                                                   ending_before, status, customer, payment_intent)
    GET  /v1/checkout/sessions/{id}                retrieve
    POST /v1/checkout/sessions/{id}                update (``metadata``; empty value deletes a key)
    POST /v1/checkout/sessions/{id}/expire         only while open, else a 400 without a code
    GET  /v1/checkout/sessions/{id}/line_items     the session's items
    GET  /c/pay/{id}                               a bare hosted page (pay / fail buttons)

Behaviour modelled on the real API (PROVIDERS.md, and the shapes of Stripe's published
fixtures, checked by ``tests/contract``): ``Idempotency-Key`` replays the first successful
answer (``Idempotent-Replayed: true``) and never creates twice; a request refused with a
4xx saves nothing, so the key can be used again once the request is fixed (Stripe saves a
result only once the endpoint started executing); the same key with other parameters is an
``idempotency_error``; unknown parameters are rejected; ``expand[]`` expands ``line_items``
and ``setup_intent`` (``data.`` on a list) on every call that returns a session, and refuses, in
Stripe's words, a path this simulator cannot expand; errors carry only codes Stripe
documents (no code where Stripe sends a message only); ``url`` is set
only while open (hosted), ``client_secret`` only for ``embedded_page``; ``expires_at``
must be 30 min to 24 h away; Stripe's amount rules (ISK in hundreds, three-decimal
currencies ending in 0, a minimum charge for a few currencies) answer 400. The session
object has today's shape (``collected_information.shipping_details``, ``hosted_page``);
``return_url`` and ``redirect_on_completion`` exist only on embedded sessions, as Stripe
omits them elsewhere. Prices and line items carry every field Stripe's fixtures require
(``billing_scheme``, ``created``, ``livemode``, ``tax_behavior``, ...). It knows no
Products: ``line_items[][price]`` must name a price added with `add_price`. The payer's
details come from the drive (``DriveRequest.customer``); without them, the session's email
and a country that fits its currency, never one fixed address.

Driving (``/_sim/sessions/{id}/...`` or the methods of the same names), each sending the
signed ``Stripe-Signature: t=...,v1=...`` webhook(s) Stripe would send:

- ``pay``: open -> complete/paid, ``checkout.session.completed``. With ``delayed`` (a
  delayed method such as SEPA debit): complete/unpaid, ``completed``; a second ``pay``
  then settles it: paid, ``checkout.session.async_payment_succeeded``.
- ``fail``: a delayed payment that fails: ``async_payment_failed`` (after ``completed``
  with unpaid if the session was still open; Stripe sends nothing for a declined card,
  the session just stays open).
- ``expire``: open -> expired, ``checkout.session.expired`` (as the API's expire does).

Sessions do not expire on their own when ``expires_at`` passes: drive them, or call expire.
"""

from __future__ import annotations

import copy
import hmac
import json
import re
import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from hashlib import sha256
from html import escape
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import SecretStr
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from orchestrator.providers.stripe.client import StripeConfig
from orchestrator.sandbox.simulator import (
    DriveCustomer,
    DriveRequest,
    DriveResult,
    Simulator,
    SimulatorError,
)

__all__ = ["StripeSimulator", "parse_form"]

API_VERSION = "2026-10-28.endive"
_DAY = 24 * 3600
_MIN_EXPIRY = 30 * 60
_ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx"}
_ZERO_DECIMAL |= {"vnd", "vuv", "xaf", "xof", "xpf"}
_THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}
_HUNDREDS_ONLY = {"isk"}
_MINIMUM = {"usd": 50, "eur": 50, "gbp": 30, "jpy": 50, "cad": 50, "aud": 50, "chf": 50}
_MODES = {"payment", "setup", "subscription"}
_UI_MODES = {"hosted_page", "embedded_page"}
_KNOWN_PARAMS = frozenset(
    {
        "adaptive_pricing", "after_expiration", "allow_promotion_codes", "automatic_tax",
        "billing_address_collection", "cancel_url", "client_reference_id", "consent_collection",
        "currency", "custom_fields", "custom_text", "customer", "customer_creation",
        "customer_email", "customer_update", "discounts", "expand", "expires_at",
        "invoice_creation", "line_items", "locale", "metadata", "mode",
        "payment_intent_data", "payment_method_collection", "payment_method_configuration",
        "payment_method_options", "payment_method_types", "phone_number_collection",
        "redirect_on_completion", "return_url", "saved_payment_method_options",
        "setup_intent_data", "shipping_address_collection", "shipping_options",
        "submit_type", "subscription_data", "success_url", "tax_id_collection", "ui_mode",
    }
)  # fmt: skip
# what this simulator can expand (Stripe can expand more: those answer Stripe's refusal)
_EXPANDABLE = frozenset({"line_items", "setup_intent"})
_UPDATABLE = frozenset({"metadata", "expand"})
# the payer's country when the drive names none: one that fits the currency
_COUNTRY_BY_CURRENCY = {"eur": "FR", "gbp": "GB", "usd": "US", "xof": "SN", "jpy": "JP"}
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_ALNUM = string.ascii_letters + string.digits


def _random_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def parse_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's bracket encoding -> nested dicts and lists (``a[0][b]=1`` -> {a: [{b: "1"}]})."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise SimulatorError(400, f"Invalid parameter name: {key}", param=key)
        path = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for part in path[:-1]:
            child = node.setdefault(part or str(len(node)), {})
            if not isinstance(child, dict):
                raise SimulatorError(400, f"Invalid parameter: {key}", param=key)
            node = child
        node[path[-1] or str(len(node))] = value
    return _listify(root, parent=None)  # type: ignore[no-any-return]


def _listify(node: Any, parent: str | None) -> Any:
    if not isinstance(node, dict):
        return node
    items = {key: _listify(value, key) for key, value in node.items()}
    if parent != "metadata" and items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


def _int(params: Mapping[str, Any], key: str, *, param: str | None = None) -> int:
    value = params[key]
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SimulatorError(400, f"Invalid integer: {value}", param=param or key) from None


def _bool(value: Any) -> bool:
    return str(value).lower() == "true"


@dataclass(frozen=True, slots=True)
class _Stored:
    fingerprint: str
    status: int
    body: dict[str, Any]
    request_id: str


class StripeSimulator(Simulator):
    """Stripe Checkout, in memory. Options of `Simulator` (webhook_url, faults, ...) apply."""

    provider: ClassVar[str] = "stripe"

    def __init__(
        self,
        *,
        api_key: str = "sk_test_sandbox",
        webhook_secret: str = "whsec_sandbox",  # noqa: S107 - the sandbox's own, not a secret
        **options: Any,
    ) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.sessions: dict[str, dict[str, Any]] = {}  # creation order
        self.line_items: dict[str, list[dict[str, Any]]] = {}
        self.prices: dict[str, dict[str, Any]] = {}
        # a setup session's SetupIntent, with its ``setup_intent_data.metadata``
        self.setup_intents: dict[str, dict[str, Any]] = {}
        self._pending_async: set[str] = set()
        self._idempotency: dict[str, _Stored] = {}
        self.counters = {"sessions_created": 0, "idempotent_replays": 0, "api_expires": 0}
        super().__init__(**options)

    # --- Python control ----------------------------------------------------------------------

    def add_price(
        self,
        price_id: str,
        *,
        unit_amount: int,
        currency: str,
        name: str,
        interval: str | None = None,
    ) -> None:
        """Make ``line_items[][price]=price_id`` resolvable (the simulator has no Products API)."""
        self.prices[price_id] = self._price_object(
            price_id,
            active=True,
            currency=currency.lower(),
            product=_random_id("prod_", 14),
            nickname=name,
            interval=interval,
            unit_amount=unit_amount,
        )

    def adapter_config(self, **overrides: Any) -> StripeConfig:
        """A `StripeConfig` pointing the real adapter at this (started) simulator."""
        fields: dict[str, Any] = {
            "api_key": SecretStr(self.api_key),
            "webhook_secret": SecretStr(self.webhook_secret),
            "api_base": self.base_url,
        }
        return StripeConfig(**(fields | overrides))

    def signature_header(self, body: bytes, timestamp: int | None = None) -> str:
        """``t=<unix>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>``: Stripe's scheme."""
        stamp = int(self.clock()) if timestamp is None else timestamp
        mac = hmac.new(self.webhook_secret.encode(), f"{stamp}.".encode() + body, sha256)
        return f"t={stamp},v1={mac.hexdigest()}"

    def create_session(self, params: Mapping[str, Any], *, base_url: str) -> dict[str, Any]:
        """Validate and store a session as ``POST /v1/checkout/sessions`` does (no idempotency)."""
        unknown = sorted(set(params) - _KNOWN_PARAMS)
        if unknown:
            raise SimulatorError(400, f"Received unknown parameter: {unknown[0]}", param=unknown[0])
        mode = self._mode(params)
        ui_mode = str(params.get("ui_mode", "hosted_page"))
        if ui_mode not in _UI_MODES:
            raise SimulatorError(400, f"Invalid ui_mode: {ui_mode}", param="ui_mode")
        session_id = _random_id("cs_test_", 58)
        items = self._line_items(params, mode)
        currency = self._currency(params, mode, items)
        if items and currency is not None:
            self._check_total(currency, sum(item["amount_total"] for item in items), mode)
        session = self._new_session(
            params,
            session_id=session_id,
            mode=mode,
            ui_mode=ui_mode,
            currency=currency,
            items=items,
            base_url=base_url,
        )
        self.sessions[session_id] = session
        self.line_items[session_id] = items
        if session["setup_intent"] is not None:
            self.setup_intents[session["setup_intent"]] = self._setup_intent(session, params)
        self.counters["sessions_created"] += 1
        return copy.deepcopy(session)

    @staticmethod
    def _setup_intent(session: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        data = params.get("setup_intent_data") or {}
        metadata = data.get("metadata") if isinstance(data, dict) else None
        return {
            "id": session["setup_intent"],
            "object": "setup_intent",
            "customer": session["customer"],
            "metadata": {str(k): str(v) for k, v in (metadata or {}).items()},
            "status": "requires_payment_method",
        }

    # --- drives -----------------------------------------------------------------------------

    async def pay(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult:
        drive = drive or DriveRequest()
        session = self._session(session_id)
        if session_id in self._pending_async:
            self._pending_async.discard(session_id)
            session["payment_status"] = "paid"
            return await self._announce(session, ["async_payment_succeeded"], drive)
        self._require_open(session, "pay")
        delayed = drive.delayed and session["mode"] != "setup"
        self._complete(session, paid=not delayed, customer=drive.customer)
        if delayed:
            self._pending_async.add(session_id)
        return await self._announce(session, ["completed"], drive)

    async def fail(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult:
        drive = drive or DriveRequest()
        session = self._session(session_id)
        if session_id in self._pending_async:
            self._pending_async.discard(session_id)
            return await self._announce(session, ["async_payment_failed"], drive)
        self._require_open(session, "fail")
        self._complete(session, paid=False, customer=drive.customer)
        return await self._announce(session, ["completed", "async_payment_failed"], drive)

    async def expire(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult:
        session = self._session(session_id)
        self._require_open(session, "expire")
        self._expire(session)
        return await self._announce(session, ["expired"], drive or DriveRequest())

    def describe(self, session_id: str) -> dict[str, Any]:
        return copy.deepcopy(self._session(session_id))

    def stats(self) -> dict[str, int]:
        by_status = {"open": 0, "complete": 0, "expired": 0}
        for session in self.sessions.values():
            by_status[session["status"]] += 1
        return {**self.counters, **{f"sessions_{k}": v for k, v in by_status.items()}}

    # --- the HTTP API -----------------------------------------------------------------------

    def error_response(self, error: SimulatorError) -> Response:
        return self._json(self._error_body(error), status=error.status)

    def add_routes(self, app: FastAPI) -> None:
        api = APIRouter(prefix="/v1", dependencies=[Depends(self._authenticate)])

        @api.post("/checkout/sessions")
        async def create(request: Request) -> Response:
            params = parse_form(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            base_url = str(request.base_url).rstrip("/")
            return self._idempotent(
                request,
                params,
                lambda: self._view(
                    self.create_session(params, base_url=base_url), expand=_expand(params)
                ),
            )

        @api.get("/checkout/sessions")
        async def list_sessions(request: Request) -> Response:
            query = parse_form(request.query_params.multi_items())
            return self._json(self._list(query, expand=_expand(query, prefix="data.")))

        @api.get("/checkout/sessions/{session_id}")
        async def retrieve(session_id: str, request: Request) -> Response:
            expand = _expand(parse_form(request.query_params.multi_items()))
            return self._json(self._view(self._session(session_id), expand=expand))

        @api.post("/checkout/sessions/{session_id}")
        async def update(session_id: str, request: Request) -> Response:
            params = parse_form(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            return self._idempotent(
                request,
                {"update": session_id, **params},
                lambda: self._view(self._update(session_id, params), expand=_expand(params)),
            )

        @api.post("/checkout/sessions/{session_id}/expire")
        async def expire(session_id: str, request: Request) -> Response:
            params = parse_form(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            return self._idempotent(
                request, {"expire": session_id, **params}, lambda: self._api_expire(session_id)
            )

        @api.get("/checkout/sessions/{session_id}/line_items")
        async def line_items(session_id: str, request: Request) -> Response:
            self._session(session_id)
            query = parse_form(request.query_params.multi_items())
            return self._json(
                self._page(
                    self.line_items[session_id],
                    query,
                    f"/v1/checkout/sessions/{session_id}/line_items",
                )
            )

        @api.api_route("/{path:path}", methods=["GET", "POST", "DELETE"])
        async def unknown(path: str, request: Request) -> Response:
            raise SimulatorError(404, f"Unrecognized request URL ({request.method}: /v1/{path}).")

        app.include_router(api)

        @app.get("/c/pay/{session_id}")
        async def hosted_page(session_id: str) -> Response:
            return self._hosted_page(self._session(session_id))

        @app.post("/c/pay/{session_id}")
        async def hosted_submit(session_id: str, request: Request) -> Response:
            action = dict(parse_qsl((await request.body()).decode())).get("action", "pay")
            drive = self.fail if action == "fail" else self.pay
            session = (await drive(session_id)).session
            target = session.get("success_url") or session.get("return_url") or "/"
            return RedirectResponse(str(target).replace("{CHECKOUT_SESSION_ID}", session_id), 303)

    # --- HTTP helpers -----------------------------------------------------------------------

    async def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise SimulatorError(401, "You did not provide an API key.")
        if not hmac.compare_digest(key, self.api_key):
            raise SimulatorError(401, f"Invalid API Key provided: {key[:8]}****{key[-4:]}")

    def _idempotent(self, request: Request, params: dict[str, Any], operation: Any) -> Response:
        key = request.headers.get("idempotency-key")
        fingerprint = json.dumps([request.url.path, params], sort_keys=True)
        if key is not None and key in self._idempotency:
            stored = self._idempotency[key]
            if stored.fingerprint != fingerprint:
                raise SimulatorError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{key}' if you "
                    "meant to execute a different request.",
                    kind="idempotency_error",
                )
            self.counters["idempotent_replays"] += 1
            headers = {"Idempotent-Replayed": "true", "Original-Request": stored.request_id}
            return self._json(stored.body, status=stored.status, headers=headers)
        try:
            body, status = operation(), 200
        except SimulatorError as exc:
            body, status = self._error_body(exc), exc.status
        response = self._json(body, status=status)
        # A refused request saves nothing (the endpoint never started executing), nor a 5xx.
        if key is not None and status < 400:
            request_id = response.headers["Request-Id"]
            self._idempotency[key] = _Stored(fingerprint, status, body, request_id)
        return response

    def _json(
        self,
        body: Mapping[str, Any],
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> JSONResponse:
        return JSONResponse(
            dict(body),
            status_code=status,
            headers={"Request-Id": _random_id("req_", 14), **(headers or {})},
        )

    @staticmethod
    def _error_body(error: SimulatorError) -> dict[str, Any]:
        kind = error.kind or ("api_error" if error.status >= 500 else "invalid_request_error")
        detail: dict[str, Any] = {"type": kind, "message": error.message}
        if error.provider_code:
            detail["code"] = error.provider_code
            detail["doc_url"] = (
                f"https://stripe.com/docs/error-codes/{error.provider_code.replace('_', '-')}"
            )
        if error.param:
            detail["param"] = error.param
        return {"error": detail}

    def _api_expire(self, session_id: str) -> dict[str, Any]:
        session = self._session(session_id)
        if session["status"] != "open":
            raise SimulatorError(
                400,
                f'Only Checkout Sessions with a status in ["open"] can be expired. '
                f'This Checkout Session has a status of "{session["status"]}".',
            )
        self._expire(session)
        self.counters["api_expires"] += 1
        event_id, body = self._event("expired", session)
        # sent after the answer, as Stripe does; `webhooks.wait_idle` awaits it
        self.webhooks.enqueue(event_id, "checkout.session.expired", body, self._signer)
        return copy.deepcopy(session)

    def _update(self, session_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        session = self._session(session_id)
        unknown = sorted(set(params) - _UPDATABLE)
        if unknown:
            raise SimulatorError(
                400, f"The simulator does not model updating {unknown[0]}.", param=unknown[0]
            )
        metadata = params.get("metadata", {})
        if not isinstance(metadata, dict):
            raise SimulatorError(400, "Invalid object", param="metadata")
        for key, value in metadata.items():
            if value == "":  # Stripe: an empty value unsets the key
                session["metadata"].pop(key, None)
            else:
                session["metadata"][str(key)] = str(value)
        return copy.deepcopy(session)

    def _list(self, query: Mapping[str, Any], *, expand: Iterable[str]) -> dict[str, Any]:
        sessions = list(reversed(self.sessions.values()))
        for field in ("status", "customer", "payment_intent"):
            if field in query:
                sessions = [s for s in sessions if s.get(field) == query[field]]
        return self._page(
            [self._view(s, expand=expand) for s in sessions], query, "/v1/checkout/sessions"
        )

    @staticmethod
    def _page(rows: list[dict[str, Any]], query: Mapping[str, Any], url: str) -> dict[str, Any]:
        limit = _int(query, "limit") if "limit" in query else 10
        if not 1 <= limit <= 100:
            raise SimulatorError(400, "Invalid limit: must be between 1 and 100", param="limit")
        ids = [row["id"] for row in rows]
        if "starting_after" in query:
            rows = (
                rows[ids.index(query["starting_after"]) + 1 :]
                if query["starting_after"] in ids
                else []
            )
        elif "ending_before" in query:
            rows = (
                rows[: ids.index(query["ending_before"])] if query["ending_before"] in ids else []
            )
            rows = rows[-limit:]
        return {
            "object": "list",
            "data": copy.deepcopy(rows[:limit]),
            "has_more": len(rows) > limit,
            "url": url,
        }

    def _view(self, session: Mapping[str, Any], *, expand: Iterable[str]) -> dict[str, Any]:
        view = copy.deepcopy(dict(session))
        expand = list(expand)
        if "setup_intent" in expand and session["setup_intent"] is not None:
            view["setup_intent"] = copy.deepcopy(self.setup_intents[session["setup_intent"]])
        if "line_items" in expand:
            items = self.line_items[session["id"]]
            url = f"/v1/checkout/sessions/{session['id']}/line_items"
            view["line_items"] = {
                "object": "list",
                "data": copy.deepcopy(items),
                "has_more": False,
                "url": url,
            }
        return view

    def _hosted_page(self, session: Mapping[str, Any]) -> HTMLResponse:
        state = escape(f"{session['status']} / {session['payment_status']}")
        amount = escape(f"{session['amount_total']} {session['currency']}")
        form = (
            '<form method="post"><button name="action" value="pay">Pay</button> '
            '<button name="action" value="fail">Fail</button></form>'
            if session["status"] == "open"
            else ""
        )
        html = (
            f"<!doctype html><title>Sandbox checkout</title><h1>{amount}</h1><p>{state}</p>{form}"
        )
        return HTMLResponse(html)

    # --- state ------------------------------------------------------------------------------

    def _session(self, session_id: str) -> dict[str, Any]:
        session = self.sessions.get(session_id)
        if session is None:
            raise SimulatorError(
                404,
                f"No such checkout.session: '{session_id}'",
                code="resource_missing",
                param="session",
            )
        return session

    @staticmethod
    def _require_open(session: Mapping[str, Any], action: str) -> None:
        if session["status"] != "open":
            raise SimulatorError(409, f"cannot {action} a session that is {session['status']}")

    @staticmethod
    def _mode(params: Mapping[str, Any]) -> str:
        mode = params.get("mode")
        if mode is None:
            raise SimulatorError(
                400, "Missing required param: mode.", code="parameter_missing", param="mode"
            )
        if mode not in _MODES:
            raise SimulatorError(
                400, f"Invalid mode: must be one of {sorted(_MODES)}", param="mode"
            )
        return str(mode)

    def _line_items(self, params: Mapping[str, Any], mode: str) -> list[dict[str, Any]]:
        raw = params.get("line_items") or []
        if mode == "setup":
            if raw:
                raise SimulatorError(
                    400, "line_items cannot be used in setup mode.", param="line_items"
                )
            return []
        if not raw or not isinstance(raw, list):
            raise SimulatorError(
                400,
                f"line_items is required in {mode} mode.",
                code="parameter_missing",
                param="line_items",
            )
        items = [self._line_item(item, index, mode) for index, item in enumerate(raw)]
        if len({item["currency"] for item in items}) > 1:
            raise SimulatorError(
                400, "All line_items must be in the same currency.", param="line_items"
            )
        return items

    def _line_item(self, raw: Any, index: int, mode: str) -> dict[str, Any]:
        where = f"line_items[{index}]"
        if not isinstance(raw, dict):
            raise SimulatorError(400, f"Invalid {where}", param=where)
        quantity = _int(raw, "quantity", param=f"{where}[quantity]") if "quantity" in raw else 1
        if quantity < 1:
            raise SimulatorError(400, "Quantity must be at least 1.", param=f"{where}[quantity]")
        price, name = self._price(raw, where)
        if mode == "subscription" and price["recurring"] is None:
            raise SimulatorError(
                400,
                "You must specify at least one recurring price in subscription mode.",
                param=f"{where}[price_data][recurring]",
            )
        amount = price["unit_amount"] * quantity
        return {
            "id": _random_id("li_", 24),
            "object": "item",
            "amount_discount": 0,
            "amount_subtotal": amount,
            "amount_tax": 0,
            "amount_total": amount,
            "adjustable_quantity": None,
            "currency": price["currency"],
            "description": name or "item",
            "metadata": {},
            "price": price,
            "quantity": quantity,
        }

    def _price(self, raw: Mapping[str, Any], where: str) -> tuple[dict[str, Any], str | None]:
        if "price" in raw:
            known = self.prices.get(str(raw["price"]))
            if known is None:
                raise SimulatorError(
                    400,
                    f"No such price: '{raw['price']}'",
                    code="resource_missing",
                    param=f"{where}[price]",
                )
            return copy.deepcopy(known), known["nickname"]
        data = raw.get("price_data")
        if not isinstance(data, dict):
            raise SimulatorError(
                400, f"You must specify either `price` or `price_data` in {where}.", param=where
            )
        currency = str(data.get("currency", "")).lower()
        if not currency:
            raise SimulatorError(
                400,
                "Missing required param: currency.",
                code="parameter_missing",
                param=f"{where}[price_data][currency]",
            )
        if "unit_amount" not in data:
            raise SimulatorError(
                400,
                "Missing required param: unit_amount.",
                code="parameter_missing",
                param=f"{where}[price_data][unit_amount]",
            )
        unit = _int(data, "unit_amount", param=f"{where}[price_data][unit_amount]")
        self._check_amount(currency, unit, f"{where}[price_data][unit_amount]")
        name = (data.get("product_data") or {}).get("name")
        if not name and "product" not in data:
            raise SimulatorError(
                400,
                "Missing required param: product_data[name].",
                code="parameter_missing",
                param=f"{where}[price_data][product_data][name]",
            )
        recurring = data.get("recurring")
        price = self._price_object(
            _random_id("price_", 24),
            active=False,
            currency=currency,
            product=data.get("product") or _random_id("prod_", 14),
            nickname=None,
            interval=recurring.get("interval") if isinstance(recurring, dict) else None,
            unit_amount=unit,
            tax_behavior=data.get("tax_behavior", "unspecified"),
        )
        return price, name

    def _price_object(
        self,
        price_id: str,
        *,
        active: bool,
        currency: str,
        product: str,
        nickname: str | None,
        interval: str | None,
        unit_amount: int,
        tax_behavior: str = "unspecified",
    ) -> dict[str, Any]:
        recurring = {
            "interval": interval,
            "interval_count": 1,
            "meter": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        }
        return {
            "id": price_id,
            "object": "price",
            "active": active,
            "billing_scheme": "per_unit",
            "created": int(self.clock()),
            "currency": currency,
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": None,
            "metadata": {},
            "nickname": nickname,
            "product": product,
            "recurring": recurring if interval else None,
            "tax_behavior": tax_behavior,
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if interval else "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount),
        }

    @staticmethod
    def _check_amount(currency: str, amount: int, param: str) -> None:
        if amount < 0:
            raise SimulatorError(400, "Invalid non-negative integer", param=param)
        if currency in _HUNDREDS_ONLY and amount % 100:
            raise SimulatorError(
                400,
                f"Invalid amount. Currency {currency.upper()} has become effectively zero-decimal "
                "and charged amounts must be evenly divisible by 100.",
                code="invalid_charge_amount_no_decimal_compatible",
                param=param,
            )
        if currency in _THREE_DECIMAL and amount % 10:
            raise SimulatorError(
                400,
                f"Invalid amount. Amounts in {currency.upper()} must be rounded to the nearest ten "
                "(the last digit must be 0).",
                code="invalid_charge_amount",
                param=param,
            )

    @staticmethod
    def _check_total(currency: str, total: int, mode: str) -> None:
        minimum = _MINIMUM.get(currency)
        if mode == "payment" and minimum is not None and 0 < total < minimum:
            raise SimulatorError(
                400,
                "The Checkout Session's total amount due must add up to at least "
                f"{minimum} {currency}",
                code="amount_too_small",
            )

    @staticmethod
    def _currency(params: Mapping[str, Any], mode: str, items: list[dict[str, Any]]) -> str | None:
        if items:
            return str(items[0]["currency"])
        currency = params.get("currency")
        if mode == "setup" and not currency and not params.get("payment_method_types"):
            raise SimulatorError(
                400,
                "currency is required in setup mode when payment_method_types is not passed.",
                code="parameter_missing",
                param="currency",
            )
        return str(currency).lower() if currency else None

    def _expires_at(self, params: Mapping[str, Any], now: int) -> int:
        if "expires_at" not in params:
            return now + _DAY
        expires_at = _int(params, "expires_at")
        if not now + _MIN_EXPIRY <= expires_at <= now + _DAY:
            raise SimulatorError(
                400,
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from "
                "Checkout Session creation.",
                param="expires_at",
            )
        return expires_at

    def _new_session(
        self,
        params: Mapping[str, Any],
        *,
        session_id: str,
        mode: str,
        ui_mode: str,
        currency: str | None,
        items: list[dict[str, Any]],
        base_url: str,
    ) -> dict[str, Any]:
        embedded = ui_mode == "embedded_page"
        self._check_urls(params, embedded=embedded)
        if params.get("customer") and params.get("customer_email"):
            raise SimulatorError(
                400,
                "You may only specify one of these parameters: customer, customer_email.",
                param="customer_email",
            )
        reference = params.get("client_reference_id")
        if reference is not None and len(str(reference)) > 200:
            raise SimulatorError(
                400,
                "client_reference_id must be at most 200 characters.",
                param="client_reference_id",
            )
        metadata = params.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise SimulatorError(400, "Invalid object", param="metadata")
        now = int(self.clock())
        subtotal = sum(item["amount_subtotal"] for item in items) if items else None
        invoice_creation = params.get("invoice_creation") or {}
        return {
            "id": session_id,
            "object": "checkout.session",
            "adaptive_pricing": {"enabled": False},
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": subtotal,
            "amount_total": subtotal,
            "automatic_tax": {
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "billing_address_collection": params.get("billing_address_collection"),
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": reference,
            "client_secret": f"{session_id}_secret_{_random_id('', 24)}" if embedded else None,
            "collected_information": None,
            "consent": None,
            "consent_collection": None,
            "created": now,
            "currency": currency,
            "currency_conversion": None,
            "custom_fields": [],
            "custom_text": {
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            "customer": params.get("customer"),
            "customer_account": None,
            "customer_creation": params.get("customer_creation", "if_required")
            if mode == "payment"
            else None,
            "customer_details": None,
            "customer_email": params.get("customer_email"),
            "discounts": [],
            "expires_at": self._expires_at(params, now),
            "invoice": None,
            "integration_identifier": None,
            "invoice_creation": {
                "enabled": _bool(invoice_creation.get("enabled")),
                "invoice_data": {
                    "account_tax_ids": None,
                    "custom_fields": None,
                    "description": None,
                    "footer": None,
                    "issuer": None,
                    "metadata": {},
                    "rendering_options": None,
                },
            }
            if mode == "payment"
            else None,
            "livemode": False,
            "locale": params.get("locale"),
            "managed_payments": {"enabled": False},
            "metadata": {str(k): str(v) for k, v in metadata.items()},
            "mode": mode,
            "origin_context": None,
            "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": "if_required" if mode != "setup" else "always",
            "payment_method_configuration_details": None,
            "payment_method_options": {},
            "payment_method_types": params.get("payment_method_types") or ["card"],
            "payment_status": "no_payment_required" if mode == "setup" else "unpaid",
            "permissions": None,
            "phone_number_collection": {"enabled": False},
            "recovered_from": None,
            "saved_payment_method_options": None,
            "setup_intent": _random_id("seti_", 24) if mode == "setup" else None,
            "shipping_address_collection": params.get("shipping_address_collection"),
            "shipping_cost": None,
            "shipping_options": [],
            "status": "open",
            "submit_type": params.get("submit_type"),
            "subscription": None,
            "success_url": params.get("success_url"),
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0}
            if items
            else None,
            "ui_mode": ui_mode,
            "url": None if embedded else f"{base_url}/c/pay/{session_id}",
            "wallet_options": None,
            # Stripe omits these two outside embedded sessions (absent, not null)
            **(
                {
                    "redirect_on_completion": params.get("redirect_on_completion", "always"),
                    "return_url": params.get("return_url"),
                }
                if embedded
                else {}
            ),
        }

    @staticmethod
    def _check_urls(params: Mapping[str, Any], *, embedded: bool) -> None:
        if embedded:
            for forbidden in ("success_url", "cancel_url"):
                if params.get(forbidden):
                    raise SimulatorError(
                        400,
                        f"{forbidden} is not supported when ui_mode is embedded_page.",
                        param=forbidden,
                    )
            if not params.get("return_url") and params.get("redirect_on_completion") != "never":
                raise SimulatorError(
                    400,
                    "return_url is required when ui_mode is embedded_page.",
                    code="parameter_missing",
                    param="return_url",
                )
        elif params.get("return_url"):
            raise SimulatorError(
                400,
                "return_url can only be used when ui_mode is embedded_page.",
                param="return_url",
            )

    def _complete(
        self, session: dict[str, Any], *, paid: bool, customer: DriveCustomer | None
    ) -> None:
        mode = session["mode"]
        session["status"] = "complete"
        session["url"] = None
        if mode != "setup":
            session["payment_status"] = "paid" if paid else "unpaid"
        if mode == "payment":
            session["payment_intent"] = _random_id("pi_", 24)
            if (session.get("invoice_creation") or {}).get("enabled"):
                session["invoice"] = _random_id("in_", 24)
        if mode == "subscription":
            session["subscription"] = _random_id("sub_", 24)
            session["invoice"] = _random_id("in_", 24)
        needs_customer = mode != "payment" or session.get("customer_creation") == "always"
        if session["customer"] is None and needs_customer:
            session["customer"] = _random_id("cus_", 14)
        payer = customer or DriveCustomer()
        address = _address(payer, str(session.get("currency") or ""))
        name = payer.name or "Sandbox Customer"
        session["customer_details"] = {
            "address": address,
            "business_name": None,
            "email": payer.email or session.get("customer_email") or "customer@example.com",
            "individual_name": None,
            "name": name,
            "phone": payer.phone,
            "tax_exempt": "none",
            "tax_ids": [],
        }
        shipping = (
            {"address": dict(address), "name": name}
            if session.get("shipping_address_collection")
            else None
        )
        session["collected_information"] = {
            "business_name": None,
            "individual_name": None,
            "shipping_details": shipping,
        }

    @staticmethod
    def _expire(session: dict[str, Any]) -> None:
        session["status"] = "expired"
        session["url"] = None

    # --- webhooks ---------------------------------------------------------------------------

    def _signer(self, body: bytes) -> dict[str, str]:
        return {"Stripe-Signature": self.signature_header(body)}

    def _event(self, suffix: str, session: Mapping[str, Any]) -> tuple[str, bytes]:
        event_id = _random_id("evt_", 24)
        event = {
            "id": event_id,
            "object": "event",
            "api_version": API_VERSION,
            "created": int(self.clock()),
            "data": {"object": copy.deepcopy(dict(session))},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": f"checkout.session.{suffix}",
        }
        return event_id, json.dumps(event).encode()

    async def _announce(
        self, session: Mapping[str, Any], suffixes: list[str], drive: DriveRequest
    ) -> DriveResult:
        deliveries = []
        for suffix in suffixes:
            event_id, body = self._event(suffix, session)
            delivery = await self.emit(
                event_id,
                f"checkout.session.{suffix}",
                body,
                self._signer,
                background=drive.background,
            )
            deliveries.append(delivery.to_json())
        return DriveResult(session=self.describe(str(session["id"])), webhooks=deliveries)


def _expand(params: Mapping[str, Any], *, prefix: str = "") -> list[str]:
    """The ``expand[]`` paths of a request, ``prefix`` removed; Stripe's refusal otherwise."""
    paths = params.get("expand") or []
    if not isinstance(paths, list):
        raise SimulatorError(400, "Invalid array", param="expand")
    expand = []
    for path in map(str, paths):
        field = path.removeprefix(prefix)
        if field not in _EXPANDABLE:
            raise SimulatorError(400, f"This property cannot be expanded ({path}).", param="expand")
        expand.append(field)
    return expand


def _address(payer: DriveCustomer, currency: str) -> dict[str, Any]:
    if payer.address is not None:
        return payer.address.model_dump()
    return {
        "city": None,
        "country": _COUNTRY_BY_CURRENCY.get(currency, "US"),
        "line1": None,
        "line2": None,
        "postal_code": None,
        "state": None,
    }
