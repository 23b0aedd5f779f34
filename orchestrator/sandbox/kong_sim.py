"""A simulator of Kong Konnect / OpenMeter billing's Stripe checkout endpoint.

Speaks (JSON, ``Authorization: Bearer <token>``, errors as RFC 7807 problems with
``status``, ``title``, ``detail``)::

    POST /v3/openmeter/customers/{customerId}/billing/stripe/checkout-sessions
    POST /api/v3/openmeter/...   the same, as a self-hosted OpenMeter serves it

answering 201 with ``BillingAppStripeCreateCheckoutSessionResult`` (seed 003), or 400
(bad body or ULID), 401 (token), 404 (unknown customer), 410 (deleted customer).

Validation as OpenMeter's ``CreateCheckoutSessionInput.Validate`` does it
(``openmeter/app/stripe/client/checkout.go``, checked by ``tests/contract``):
``ui_mode: hosted`` without ``success_url`` is a 400 "success url is required for hosted
ui mode"; ``embedded`` with ``cancel_url`` a 400 "cancel url is not allowed for embedded
ui mode"; a metadata key OpenMeter reserves (``om_namespace``, ``om_app_id``,
``om_customer_id``) a 400. Metadata goes where OpenMeter puts it: on the SetupIntent
(``setup_intent_data.metadata``, with OpenMeter's own ``om_*`` keys added), not on the
Checkout Session, whose metadata, and so the answer's, stays empty.

Decision: **Kong's sessions live in a `StripeSimulator`**. Kong opens a real Stripe
session in setup mode on the connected account, so this simulator creates it in the
Stripe simulator it is given (``mode=setup``, the customer's ``cus_...``). Everything
after creation is Stripe's: the adapter polls it through the Stripe API (the Stripe
simulator's ``GET /v1/checkout/sessions/{id}``), and ``/_sim/sessions/{id}/pay | fail |
expire`` here drive the Stripe session, which sends *Stripe's* webhooks to the Stripe
simulator's webhook URL (Kong itself sends none to the merchant). ``GET
/_sim/sessions/{id}`` shows the Kong-shaped result with the current status.

Like the real API as far as documented, it honours no ``Idempotency-Key``: each POST
opens a new session (``sessions_created`` in ``/_sim/stats`` counts them).
Customers: any well-formed ULID is accepted and given a Stripe customer on first use,
unless ``auto_create_customers=False``; `add_customer` and `delete_customer` shape them.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import SecretStr
from starlette.responses import JSONResponse, Response

from orchestrator.providers.kong.client import KongConfig
from orchestrator.sandbox.simulator import DriveRequest, DriveResult, Simulator, SimulatorError
from orchestrator.sandbox.stripe_sim import StripeSimulator

__all__ = ["KongSimulator"]

_ULID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
_TITLES |= {409: "Conflict", 410: "Gone", 500: "Internal Server Error"}
_TITLES |= {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_OPTIONS = frozenset(
    {
        "billing_address_collection", "cancel_url", "client_reference_id", "customer_update",
        "consent_collection", "currency", "custom_text", "expires_at", "locale", "metadata",
        "return_url", "success_url", "ui_mode", "payment_method_types",
        "redirect_on_completion", "tax_id_collection",
    }
)  # fmt: skip
_PASSED_TO_STRIPE = (
    "cancel_url", "client_reference_id", "expires_at", "locale", "return_url",
    "success_url", "payment_method_types", "redirect_on_completion",
)  # fmt: skip
_RESERVED_METADATA = ("om_namespace", "om_app_id", "om_customer_id")
NAMESPACE = "default"  # the simulated OpenMeter namespace
APP_ID = "01JSANDB0XSTR1PEAPP0000000"  # the simulated Stripe app (a ULID)


def new_ulid() -> str:
    return "0" + "".join(secrets.choice(_CROCKFORD) for _ in range(25))


def _rfc3339(unix: int | None) -> str | None:
    if unix is None:
        return None
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")


class KongSimulator(Simulator):
    """Kong billing's checkout endpoint over a `StripeSimulator`'s state."""

    provider: ClassVar[str] = "kong"

    def __init__(
        self,
        stripe: StripeSimulator,
        *,
        token: str = "kpat_sandbox",  # noqa: S107 - the sandbox's own token
        auto_create_customers: bool = True,
        **options: Any,
    ) -> None:
        self.stripe = stripe
        self.token = token
        self.auto_create_customers = auto_create_customers
        self.customers: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}  # session id -> the Kong result at creation
        self.counters = {"sessions_created": 0}
        super().__init__(**options)

    # --- Python control ----------------------------------------------------------------------

    def adapter_config(self, **overrides: Any) -> KongConfig:
        """A `KongConfig` pointing the real adapter at this simulator and its Stripe one."""
        fields: dict[str, Any] = {
            "token": SecretStr(self.token),
            "base_url": self.base_url,
            "stripe": self.stripe.adapter_config(),
        }
        return KongConfig(**(fields | overrides))

    def add_customer(
        self,
        customer_id: str | None = None,
        *,
        email: str | None = None,
        stripe_customer_id: str | None = None,
    ) -> str:
        customer_id = customer_id or new_ulid()
        self.customers[customer_id] = {
            "id": customer_id,
            "email": email,
            "stripe_customer_id": stripe_customer_id or f"cus_{secrets.token_hex(7)}",
            "deleted": False,
        }
        return customer_id

    def delete_customer(self, customer_id: str) -> None:
        self.customers[customer_id]["deleted"] = True

    def create_session(self, customer_id: str, body: Any) -> dict[str, Any]:
        customer = self._customer(customer_id)
        options = self._options(body)
        params = self._stripe_params(options, customer | {"id": customer_id})
        try:
            session = self.stripe.create_session(params, base_url=self._stripe_base_url())
        except SimulatorError as exc:  # Stripe refused: Kong answers 400 with its reason
            raise SimulatorError(400, f"stripe: {exc.message}") from None
        self.counters["sessions_created"] += 1
        result = self._result(session, customer)
        self.sessions[session["id"]] = result
        return result

    # --- drives: the Stripe session's ------------------------------------------------------

    async def pay(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult:
        self._known(session_id)
        result = await self.stripe.pay(session_id, drive)
        return DriveResult(session=self.describe(session_id), webhooks=result.webhooks)

    async def fail(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult:
        self._known(session_id)
        result = await self.stripe.fail(session_id, drive)
        return DriveResult(session=self.describe(session_id), webhooks=result.webhooks)

    async def expire(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult:
        self._known(session_id)
        result = await self.stripe.expire(session_id, drive)
        return DriveResult(session=self.describe(session_id), webhooks=result.webhooks)

    def describe(self, session_id: str) -> dict[str, Any]:
        result = dict(self._known(session_id))
        current = self.stripe.describe(session_id)
        result["status"] = current["status"]
        if current["url"] is None:
            result.pop("url", None)
        return result

    def stats(self) -> dict[str, int]:
        return {**self.counters, "customers": len(self.customers)}

    # --- the HTTP API -----------------------------------------------------------------------

    def error_response(self, error: SimulatorError) -> Response:
        body: dict[str, Any] = {
            "status": error.status,
            "title": _TITLES.get(error.status, "Error"),
            "detail": error.message,
            "instance": f"kong:trace:{secrets.randbelow(10**18)}",
        }
        if error.status == 400:  # OpenMeter's BadRequestError requires invalid_parameters
            field = error.param or "stripe_options"
            body["invalid_parameters"] = [
                {"field": field, "reason": error.message, "source": "body"}
            ]
        return JSONResponse(body, status_code=error.status, media_type="application/problem+json")

    def add_routes(self, app: FastAPI) -> None:
        for prefix in ("/v3", "/api/v3"):
            router = APIRouter(prefix=prefix, dependencies=[Depends(self._authenticate)])

            @router.post("/openmeter/customers/{customer_id}/billing/stripe/checkout-sessions")
            async def create(customer_id: str, request: Request) -> Response:
                try:
                    body = json.loads(await request.body())
                except ValueError:
                    raise SimulatorError(400, "request body is not valid JSON") from None
                return JSONResponse(self.create_session(customer_id, body), status_code=201)

            app.include_router(router)

    async def _authenticate(self, request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token, self.token):
            raise SimulatorError(401, "Invalid credentials")

    # --- helpers ----------------------------------------------------------------------------

    def _known(self, session_id: str) -> dict[str, Any]:
        result = self.sessions.get(session_id)
        if result is None:
            raise SimulatorError(404, f"no Kong checkout session {session_id}")
        return result

    def _customer(self, customer_id: str) -> dict[str, Any]:
        if not _ULID.match(customer_id):
            raise SimulatorError(400, f"customerId {customer_id!r} is not a ULID")
        customer = self.customers.get(customer_id)
        if customer is None and self.auto_create_customers:
            self.add_customer(customer_id)
            customer = self.customers[customer_id]
        if customer is None:
            raise SimulatorError(404, f"customer {customer_id} not found")
        if customer["deleted"]:
            raise SimulatorError(410, f"customer {customer_id} is deleted")
        return customer

    @staticmethod
    def _options(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("stripe_options"), dict):
            raise SimulatorError(400, "stripe_options: required object")
        extra = sorted(set(body) - {"stripe_options"})
        options: dict[str, Any] = body["stripe_options"]
        unknown = sorted(set(options) - _OPTIONS)
        if extra or unknown:
            raise SimulatorError(400, f"unknown properties: {', '.join(extra + unknown)}")
        currency = options.get("currency")
        if currency is not None and not (
            isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency)
        ):
            raise SimulatorError(400, "stripe_options.currency: must match ^[A-Z]{3}$")
        if options.get("ui_mode", "hosted") not in {"hosted", "embedded"}:
            raise SimulatorError(400, "stripe_options.ui_mode: must be hosted or embedded")
        if "expires_at" in options and not isinstance(options["expires_at"], int):
            raise SimulatorError(400, "stripe_options.expires_at: must be an integer (Unix time)")
        _validate_as_openmeter(options)
        return options

    @staticmethod
    def _stripe_params(options: Mapping[str, Any], customer: Mapping[str, Any]) -> dict[str, Any]:
        embedded = options.get("ui_mode") == "embedded"
        params: dict[str, Any] = {
            "mode": "setup",
            "customer": customer["stripe_customer_id"],
            "currency": str(options.get("currency") or "USD").lower(),
            "ui_mode": "embedded_page" if embedded else "hosted_page",
        }
        params.update({key: options[key] for key in _PASSED_TO_STRIPE if key in options})
        # OpenMeter: the merchant's metadata and its own keys go on the SetupIntent
        metadata = dict(options.get("metadata") or {})
        metadata |= {
            "om_namespace": NAMESPACE,
            "om_app_id": APP_ID,
            "om_customer_id": customer["id"],
        }
        params["setup_intent_data"] = {"metadata": metadata}
        return params

    def _stripe_base_url(self) -> str:
        try:
            return self.stripe.base_url
        except RuntimeError:  # the Stripe simulator is not served: its state is still usable
            return "https://checkout.stripe.invalid"

    @staticmethod
    def _result(session: Mapping[str, Any], customer: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "customer_id": customer["id"],
            "stripe_customer_id": customer["stripe_customer_id"],
            "session_id": session["id"],
            "setup_intent_id": session["setup_intent"],
            "client_secret": session["client_secret"],
            "client_reference_id": session["client_reference_id"],
            "customer_email": customer["email"],
            "currency": (session["currency"] or "").upper() or None,
            "created_at": _rfc3339(session["created"]),
            "expires_at": _rfc3339(session["expires_at"]),
            "metadata": session["metadata"],
            "status": session["status"],
            "url": session["url"],
            "mode": "setup",
            "cancel_url": session["cancel_url"],
            "success_url": session["success_url"],
            "return_url": session.get("return_url"),
        }
        return {key: value for key, value in result.items() if value is not None}


def _validate_as_openmeter(options: Mapping[str, Any]) -> None:
    """OpenMeter's ``CreateCheckoutSessionInput.Validate``, in its own words."""
    ui_mode = options.get("ui_mode")
    if ui_mode == "embedded" and options.get("cancel_url") is not None:
        raise SimulatorError(400, "cancel url is not allowed for embedded ui mode")
    if ui_mode == "hosted" and options.get("success_url") is None:
        raise SimulatorError(400, "success url is required for hosted ui mode")
    metadata = options.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise SimulatorError(400, "stripe_options.metadata: must be an object")
    for key in _RESERVED_METADATA:
        if key in metadata:
            raise SimulatorError(400, f"metadata key {key} is reserved")
