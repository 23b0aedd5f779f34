"""A stateful local Polar: the checkout endpoints and Polar's signed webhooks.

Built on the shared `Simulator` (faults, ``/_sim`` control routes, webhook sender).
Speaks ``POST /v1/checkouts/``, ``GET /v1/checkouts/{id}``, ``PATCH /v1/checkouts/{id}``
and ``GET /v1/checkouts/`` behind ``Authorization: Bearer <token>``, answering Polar's
API version 2026-10 (``Polar-Version`` names it on every answer; a version Polar does not
serve is a 404, as Polar's versioning middleware answers): every field its ``Checkout``,
``CheckoutProduct``, ``ProductPriceFixed`` and ``Order`` schemas require, checked by
``tests/contract`` against Polar's OpenAPI and parsed there by ``polar-sdk``. Request
bodies are validated with unknown fields refused, so a typo in a client shows; a 422 has
Polar's ``detail`` list of ``{loc, msg, type}``.

Money as Polar computes it: ``amount`` is the price (an ad-hoc ``prices`` entry or the
product's own), ``discount_amount`` a configured fixed discount, ``net_amount`` and the
deprecated ``subtotal_amount`` are after discount, ``tax_amount`` is ``null`` until the
billing country is known (then ``tax_rate_bps`` of the net), ``total_amount`` is net +
tax. Checkouts expire an hour after creation (read lazily against the clock, with a
``checkout.expired`` webhook).

Webhooks carry Polar's envelope ``{type, timestamp, data}`` plus ``api_version``, which
``polar-sdk`` requires (Polar's published schema does not list it). As on a Polar webhook
endpoint, only the subscribed events are sent (``subscribed``; by default the three the
orchestrator needs, ``checkout.updated``, ``checkout.expired`` and ``order.paid``; add
``checkout.created`` to get one after every create). Drives (also
``POST /_sim/sessions/{id}/pay|fail|expire``), each sending Standard Webhooks signed
with the UTF-8 bytes of the whole ``whsec_`` secret, as Polar does (the payer's details
come from ``DriveRequest.customer``):

- pay: ``checkout.updated`` (confirmed), then ``checkout.updated`` (succeeded) and
  ``order.paid``; with ``delayed`` it stops at confirmed (a later pay finishes it).
- fail: ``checkout.updated`` (failed).
- expire: ``checkout.expired``.

Polar has no idempotency key and no expire endpoint; neither does this simulator.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.responses import JSONResponse, Response

from orchestrator.providers.polar.client import PolarConfig
from orchestrator.providers.polar.transformers import sign_webhook
from orchestrator.sandbox.simulator import (
    DriveCustomer,
    DriveRequest,
    DriveResult,
    Simulator,
    SimulatorError,
)

__all__ = ["DEFAULT_PRODUCTS", "PolarCatalog", "PolarProduct", "PolarSimulator"]

CHECKOUT_TTL = timedelta(hours=1)
MIN_AMOUNT = 50
API_VERSION = "2026-10"
_SERVED_VERSIONS = frozenset({"2026-04", API_VERSION})
# the payer's country when the drive names none: one that fits the currency
_COUNTRY_BY_CURRENCY = {"eur": "FR", "gbp": "GB", "usd": "US", "cad": "CA", "jpy": "JP"}
DEFAULT_SUBSCRIBED = frozenset({"checkout.updated", "checkout.expired", "order.paid"})
_Meta = dict[str, str | int | float | bool]


class PolarProduct(BaseModel):
    """A product the simulated organisation sells, with its default price."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    price_amount: int = Field(default=1000, ge=0)
    price_currency: str = "usd"
    recurring_interval: Literal["day", "week", "month", "year"] | None = None


class _FixedPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_type: Literal["fixed"]
    price_amount: int = Field(ge=0)
    price_currency: str = Field(default="usd", min_length=3, max_length=3)


class _Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line1: str | None = None
    line2: str | None = None
    postal_code: str | None = None
    city: str | None = None
    state: str | None = None
    country: str = Field(min_length=2, max_length=2)


class _CheckoutCreate(BaseModel):
    """Polar's ``CheckoutProductsCreate`` (the fields a merchant may send)."""

    model_config = ConfigDict(extra="forbid")

    products: list[str] = Field(min_length=1)
    prices: dict[str, list[_FixedPrice]] | None = None
    amount: int | None = Field(default=None, ge=0)
    currency: str | None = None
    discount_id: str | None = None
    allow_discount_codes: bool = True
    metadata: _Meta = Field(default_factory=dict, max_length=50)
    customer_metadata: _Meta = Field(default_factory=dict, max_length=50)
    customer_id: str | None = None
    external_customer_id: str | None = None
    customer_name: str | None = None
    customer_email: str | None = None
    customer_ip_address: str | None = None
    customer_billing_address: _Address | None = None
    customer_tax_id: str | None = None
    is_business_customer: bool = False
    require_billing_address: bool = False
    embed_origin: str | None = None
    success_url: str | None = None
    return_url: str | None = None
    locale: str | None = None


class _CheckoutUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metadata: _Meta | None = Field(default=None, max_length=50)
    customer_name: str | None = None
    customer_email: str | None = None
    customer_billing_address: _Address | None = None
    customer_tax_id: str | None = None
    discount_id: str | None = None
    success_url: str | None = None
    return_url: str | None = None
    embed_origin: str | None = None


DEFAULT_PRODUCTS = (
    PolarProduct(id="prod_sim_one_time", name="Digital download"),
    PolarProduct(id="prod_sim_monthly", name="Monthly plan", recurring_interval="month"),
)


class PolarCatalog(BaseModel):
    """What the simulated organisation sells and how Polar prices it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    products: tuple[PolarProduct, ...] = DEFAULT_PRODUCTS
    discounts: dict[str, int] = Field(default_factory=dict)  # discount id -> fixed amount off
    currencies: frozenset[str] = frozenset(
        {"usd", "eur", "gbp", "cad", "aud", "chf", "sek", "nok", "dkk", "jpy"}
    )
    tax_rate_bps: int = Field(default=0, ge=0, le=10_000)  # once the billing country is known


class PolarSimulator(Simulator):
    provider: ClassVar[str] = "polar"

    def __init__(
        self,
        *,
        access_token: str,
        webhook_secret: str,
        catalog: PolarCatalog | None = None,
        subscribed: frozenset[str] = DEFAULT_SUBSCRIBED,
        **kwargs: Any,
    ) -> None:
        self.subscribed = subscribed
        self._token = access_token
        self._secret = SecretStr(webhook_secret)
        self.catalog = catalog or PolarCatalog()
        self.products = {product.id: product for product in self.catalog.products}
        self.organization_id = str(uuid.uuid4())
        self.checkouts: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self._counts = dict.fromkeys(
            ("sessions_created", "sessions_paid", "sessions_failed", "sessions_expired"), 0
        )
        self._counts |= {"list_requests": 0, "update_requests": 0}
        super().__init__(**kwargs)

    # --- the provider's API ---------------------------------------------------------------

    def add_routes(self, app: FastAPI) -> None:
        auth = [Depends(self._authorize)]

        @app.middleware("http")
        async def versioned(request: Request, call_next: Any) -> Response:
            if request.url.path.startswith("/_sim"):
                response: Response = await call_next(request)
                return response
            version = request.headers.get("polar-version", API_VERSION)
            if version not in _SERVED_VERSIONS:  # Polar's APIVersionMiddleware
                return JSONResponse({"detail": "Not Found"}, status_code=404)
            response = await call_next(request)
            response.headers["Polar-Version"] = version
            return response

        @app.post("/v1/checkouts/", status_code=201, dependencies=auth)
        async def create(body: _CheckoutCreate, request: Request) -> dict[str, Any]:
            await self._sweep()
            checkout = self._create(body, str(request.base_url))
            self._enqueue("checkout.created", checkout)
            return checkout

        @app.get("/v1/checkouts/", dependencies=auth)
        async def list_checkouts(
            page: Annotated[int, Query(ge=1)] = 1,
            limit: Annotated[int, Query(ge=1, le=100)] = 10,
            product_id: str | None = None,
            status: str | None = None,
            sorting: str = "-created_at",
        ) -> dict[str, Any]:
            await self._sweep()
            return self._list(page, limit, product_id, status, sorting)

        @app.get("/v1/checkouts/{checkout_id}", dependencies=auth)
        async def retrieve(checkout_id: str) -> dict[str, Any]:
            await self._sweep()
            return self.describe(checkout_id)

        @app.patch("/v1/checkouts/{checkout_id}", dependencies=auth)
        async def update(checkout_id: str, body: _CheckoutUpdate) -> dict[str, Any]:
            await self._sweep()
            return self._update(checkout_id, body)

    def error_response(self, error: SimulatorError) -> Response:
        kind = error.kind or _ERROR_NAMES.get(error.status, "HTTPException")
        detail: Any = error.message
        if error.status == 422:  # Polar: a list of {loc, msg, type}, as FastAPI renders it
            loc = ["body", error.param] if error.param else ["body"]
            detail = [{"loc": loc, "msg": error.message, "type": "value_error"}]
        return JSONResponse({"error": kind, "detail": detail}, status_code=error.status)

    async def _authorize(self, authorization: Annotated[str | None, Header()] = None) -> None:
        expected = f"Bearer {self._token}"
        if authorization is None or not secrets.compare_digest(authorization, expected):
            raise SimulatorError(401, "Invalid or missing access token", kind="Unauthorized")

    def _create(self, body: _CheckoutCreate, base_url: str) -> dict[str, Any]:
        product = self._product(body.products[0])
        amount, currency = self._price(body, product)
        discount = self._discount(body.discount_id, amount)
        now = self._now()
        checkout_id, client_secret = str(uuid.uuid4()), f"polar_c_{secrets.token_urlsafe(24)}"
        checkout: dict[str, Any] = {
            "id": checkout_id,
            "created_at": _iso(now),
            "modified_at": None,
            "payment_processor": "stripe",
            "status": "open",
            "client_secret": client_secret,
            "url": f"{base_url.rstrip('/')}/checkout/{client_secret}",
            "expires_at": _iso(now + CHECKOUT_TTL),
            "success_url": body.success_url or f"{base_url.rstrip('/')}/success",
            "return_url": body.return_url,
            "embed_origin": body.embed_origin,
            "amount": amount,
            "currency": currency,
            "discount_id": body.discount_id,
            "discount": self._discount_object(body.discount_id, currency),
            "discount_amount": discount,
            "allow_discount_codes": body.allow_discount_codes,
            "is_discount_applicable": amount > 0,
            "is_free_product_price": amount == 0,
            "is_payment_setup_required": product.recurring_interval is not None,
            "is_business_customer": body.is_business_customer,
            "require_billing_address": body.require_billing_address,
            "customer_id": body.customer_id,
            "external_customer_id": body.external_customer_id,
            "customer_name": body.customer_name,
            "customer_billing_name": None,
            "customer_email": body.customer_email,
            "customer_ip_address": body.customer_ip_address,
            "customer_billing_address": _dump(body.customer_billing_address),
            "customer_tax_id": body.customer_tax_id,
            "payment_processor_metadata": {},
            "metadata": dict(body.metadata),
            "customer_metadata": dict(body.customer_metadata),
            "locale": body.locale,
            "organization_id": self.organization_id,
            "subscription_id": None,
            "attached_custom_fields": [],
            "custom_field_data": {},
            "trial_end": None,
            "allow_trial": None,
            "trial_interval": None,
            "trial_interval_count": None,
            "active_trial_interval": None,
            "active_trial_interval_count": None,
            "tax_behavior": None,  # known once Polar computed the tax
            "payment_method_type": None,  # chosen by the payer in the form
            "billing_address_fields": _billing_address_fields(
                require_full=body.require_billing_address
            ),
            "seats": None,
            "units": None,  # seat-based prices only; polar-sdk requires the keys
            "min_units": None,
            "max_units": None,
        }
        ad_hoc = bool((body.prices or {}).get(product.id))
        checkout.update(self._product_fields(product, amount, currency, now, ad_hoc=ad_hoc))
        _recompute(checkout, self.catalog.tax_rate_bps)
        self.checkouts[checkout_id] = checkout
        self._counts["sessions_created"] += 1
        return dict(checkout)

    def _product(self, product_id: str) -> PolarProduct:
        product = self.products.get(product_id)
        if product is None:
            raise SimulatorError(
                422, f"Product {product_id} does not exist", kind="PolarRequestValidationError"
            )
        return product

    def _price(self, body: _CheckoutCreate, product: PolarProduct) -> tuple[int, str]:
        ad_hoc = (body.prices or {}).get(product.id)
        if ad_hoc:
            amount, currency = ad_hoc[0].price_amount, ad_hoc[0].price_currency.lower()
        else:
            amount = body.amount if body.amount is not None else product.price_amount
            currency = (body.currency or product.price_currency).lower()
        if currency not in self.catalog.currencies:
            raise SimulatorError(
                422, f"Currency {currency} is not supported", kind="PolarRequestValidationError"
            )
        if 0 < amount < MIN_AMOUNT:
            raise SimulatorError(
                422,
                f"Amount must be 0 or at least {MIN_AMOUNT}",
                kind="PolarRequestValidationError",
            )
        return amount, currency

    def _discount(self, discount_id: str | None, amount: int) -> int:
        if discount_id is None:
            return 0
        if discount_id not in self.catalog.discounts:
            raise SimulatorError(
                422, f"Discount {discount_id} does not exist", kind="PolarRequestValidationError"
            )
        return min(self.catalog.discounts[discount_id], amount)

    def _discount_object(self, discount_id: str | None, currency: str) -> dict[str, Any] | None:
        if discount_id is None:
            return None
        amount = self.catalog.discounts[discount_id]
        return {  # Polar's CheckoutDiscountFixedOnceForeverDuration
            "id": discount_id,
            "name": discount_id,
            "code": None,
            "type": "fixed",
            "duration": "once",
            "amount": amount,
            "currency": currency,
            "amounts": {currency: amount},
        }

    def _product_fields(
        self, product: PolarProduct, amount: int, currency: str, now: datetime, *, ad_hoc: bool
    ) -> dict[str, Any]:
        price_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{product.id}/{amount}/{currency}"))
        price = {  # Polar's ProductPriceFixed: recurrence lives on the product now
            "id": price_id,
            "created_at": _iso(now),
            "modified_at": None,
            "source": "ad_hoc" if ad_hoc else "catalog",
            "amount_type": "fixed",
            "is_archived": False,
            "product_id": product.id,
            "price_amount": amount,
            "price_currency": currency,
            "tax_behavior": None,  # the organisation's default
        }
        recurring = product.recurring_interval is not None
        checkout_product = {
            "id": product.id,
            "created_at": _iso(now),
            "modified_at": None,
            "name": product.name,
            "description": None,
            "visibility": "public",
            "is_recurring": recurring,
            "recurring_interval": product.recurring_interval,
            "recurring_interval_count": 1 if recurring else None,
            "meter_interval": None,
            "meter_interval_count": None,
            "trial_interval": None,
            "trial_interval_count": None,
            "is_archived": False,
            "organization_id": self.organization_id,
            "prices": [price],
            "benefits": [],
            "medias": [],
        }
        return {
            "product_id": product.id,
            "product_price_id": price_id,
            "product": checkout_product,
            "product_price": price,
            "products": [checkout_product],
            "prices": {product.id: [price]},
        }

    def _list(
        self, page: int, limit: int, product_id: str | None, status: str | None, sorting: str
    ) -> dict[str, Any]:
        self._counts["list_requests"] += 1
        found = [
            checkout
            for checkout in self.checkouts.values()
            if (product_id is None or checkout["product_id"] == product_id)
            and (status is None or checkout["status"] == status)
        ]
        field = sorting.lstrip("-")
        if field not in {"created_at", "expires_at", "status"}:
            raise SimulatorError(422, f"Cannot sort by {field}", kind="PolarRequestValidationError")
        found.sort(key=lambda checkout: str(checkout[field]), reverse=sorting.startswith("-"))
        start = (page - 1) * limit
        total = len(found)
        return {
            "items": [dict(checkout) for checkout in found[start : start + limit]],
            "pagination": {"total_count": total, "max_page": max(1, -(-total // limit))},
        }

    def _update(self, checkout_id: str, body: _CheckoutUpdate) -> dict[str, Any]:
        self._counts["update_requests"] += 1
        checkout = self._checkout(checkout_id)
        if checkout["status"] != "open":
            raise SimulatorError(403, "Checkout is not open", kind="NotOpenCheckout")
        changes = body.model_dump(exclude_unset=True)
        if "discount_id" in changes:
            checkout["discount_amount"] = self._discount(body.discount_id, checkout["amount"])
        if "customer_billing_address" in changes:
            changes["customer_billing_address"] = _dump(body.customer_billing_address)
        checkout.update(changes)
        checkout["modified_at"] = _iso(self._now())
        _recompute(checkout, self.catalog.tax_rate_bps)
        return dict(checkout)

    # --- drives ---------------------------------------------------------------------------

    async def pay(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult:
        drive = drive or DriveRequest()
        checkout = self._checkout(session_id)
        if checkout["status"] not in {"open", "confirmed"}:
            raise SimulatorError(409, f"Checkout is {checkout['status']}", kind="NotOpenCheckout")
        sent = []
        if checkout["status"] == "open":
            self._confirm(checkout, drive.customer)
            sent.append(await self._send("checkout.updated", checkout, drive))
        if not drive.delayed:
            order = self._succeed(checkout)
            sent.append(await self._send("checkout.updated", checkout, drive))
            sent.append(await self._send("order.paid", order, drive))
        return DriveResult(session=dict(checkout), webhooks=sent)

    async def fail(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult:
        checkout = self._checkout(session_id)
        if checkout["status"] not in {"open", "confirmed"}:
            raise SimulatorError(409, f"Checkout is {checkout['status']}", kind="NotOpenCheckout")
        self._set_status(checkout, "failed")
        self._counts["sessions_failed"] += 1
        sent = [await self._send("checkout.updated", checkout, drive or DriveRequest())]
        return DriveResult(session=dict(checkout), webhooks=sent)

    async def expire(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult:
        checkout = self._checkout(session_id)
        if checkout["status"] != "open":
            raise SimulatorError(409, f"Checkout is {checkout['status']}", kind="NotOpenCheckout")
        delivery = await self._expire(checkout, background=bool(drive and drive.background))
        return DriveResult(session=dict(checkout), webhooks=[delivery])

    def describe(self, session_id: str) -> dict[str, Any]:
        return dict(self._checkout(session_id))

    def adapter_config(self, **overrides: Any) -> PolarConfig:
        """A `PolarConfig` pointing the real adapter at this (started) simulator."""
        recurring = [p.id for p in self.catalog.products if p.recurring_interval is not None]
        one_time = [p.id for p in self.catalog.products if p.recurring_interval is None]
        fields: dict[str, Any] = {
            "access_token": SecretStr(self._token),
            "webhook_secret": self._secret,
            "payment_product_id": one_time[0] if one_time else self.catalog.products[0].id,
            "subscription_product_id": recurring[0] if recurring else None,
            "base_url": self.base_url,
        }
        return PolarConfig(**(fields | overrides))

    def stats(self) -> dict[str, int]:
        return dict(self._counts)

    def _confirm(self, checkout: dict[str, Any], payer: DriveCustomer | None) -> None:
        payer = payer or DriveCustomer()
        if payer.address is not None:
            checkout["customer_billing_address"] = _polar_address(payer.address.model_dump())
        elif checkout["customer_billing_address"] is None:
            country = _COUNTRY_BY_CURRENCY.get(checkout["currency"], "US")
            checkout["customer_billing_address"] = _polar_address({"country": country})
        checkout["customer_billing_name"] = payer.name or checkout["customer_name"]
        checkout["customer_email"] = payer.email or checkout["customer_email"]
        checkout["payment_method_type"] = "card"
        if checkout["customer_id"] is None:
            checkout["customer_id"] = str(uuid.uuid4())
        _recompute(checkout, self.catalog.tax_rate_bps)
        self._set_status(checkout, "confirmed")

    def _succeed(self, checkout: dict[str, Any]) -> dict[str, Any]:
        if checkout["product"]["is_recurring"]:
            checkout["subscription_id"] = str(uuid.uuid4())
        self._set_status(checkout, "succeeded")
        self._counts["sessions_paid"] += 1
        order = _order_for(checkout, self._now())
        self.orders[order["id"]] = order
        return order

    async def _expire(self, checkout: dict[str, Any], *, background: bool) -> dict[str, Any]:
        self._set_status(checkout, "expired")
        self._counts["sessions_expired"] += 1
        return await self._send("checkout.expired", checkout, DriveRequest(background=background))

    async def _sweep(self) -> None:
        """Expire open checkouts past ``expires_at``, as Polar's periodic task does."""
        now = _iso(self._now())
        for checkout in list(self.checkouts.values()):
            if checkout["status"] == "open" and checkout["expires_at"] <= now:
                await self._expire(checkout, background=True)

    def _set_status(self, checkout: dict[str, Any], status: str) -> None:
        checkout["status"] = status
        checkout["modified_at"] = _iso(self._now())

    async def _send(
        self, event_type: str, data: Mapping[str, Any], drive: DriveRequest
    ) -> dict[str, Any]:
        msg_id, body, sign = self._webhook(event_type, data)
        if event_type not in self.subscribed:  # the endpoint did not ask for it
            return {"event_id": msg_id, "event_type": event_type, "state": "not_subscribed"}
        delivery = await self.emit(msg_id, event_type, body, sign, background=drive.background)
        return delivery.to_json()

    def _enqueue(self, event_type: str, data: Mapping[str, Any]) -> None:
        """Send after the answer, as Polar's worker does; `webhooks.wait_idle` awaits it."""
        msg_id, body, sign = self._webhook(event_type, data)
        if event_type in self.subscribed:
            self.webhooks.enqueue(msg_id, event_type, body, sign)

    def _webhook(
        self, event_type: str, data: Mapping[str, Any]
    ) -> tuple[str, bytes, Callable[[bytes], Mapping[str, str]]]:
        msg_id = f"msg_{uuid.uuid4().hex}"
        payload = {
            "type": event_type,
            "timestamp": _iso(self._now()),
            "api_version": API_VERSION,
            "data": dict(data),
        }

        def sign(raw: bytes) -> Mapping[str, str]:
            # Signed afresh per attempt, with the same webhook-id (Standard Webhooks).
            return sign_webhook(self._secret, msg_id, int(self.clock()), raw)

        return msg_id, json.dumps(payload).encode(), sign

    def _checkout(self, checkout_id: str) -> dict[str, Any]:
        checkout = self.checkouts.get(checkout_id)
        if checkout is None:
            raise SimulatorError(404, "Not found", kind="ResourceNotFound")
        return checkout

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=UTC)


_ERROR_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "NotPermitted",
    404: "ResourceNotFound",
    409: "Conflict",
    422: "PolarRequestValidationError",
}


def _recompute(checkout: dict[str, Any], tax_rate_bps: int) -> None:
    net = checkout["amount"] - checkout["discount_amount"]
    address = checkout["customer_billing_address"]
    tax = None if not address else net * tax_rate_bps // 10_000
    checkout["tax_behavior"] = None if tax is None else "exclusive"
    checkout["net_amount"] = net
    checkout["subtotal_amount"] = net  # deprecated name: after discount, before tax
    checkout["tax_amount"] = tax
    checkout["total_amount"] = net + (tax or 0)
    checkout["is_payment_required"] = checkout["total_amount"] > 0
    checkout["is_payment_form_required"] = (
        checkout["is_payment_required"] or checkout["is_payment_setup_required"]
    )


def _order_for(checkout: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Polar's ``Order`` as ``order.paid`` carries it (customer, product and items inline)."""
    stamp = _iso(now)
    tax = checkout["tax_amount"] or 0
    product = {
        key: value
        for key, value in checkout["product"].items()
        if key not in {"prices", "benefits", "medias"}
    }
    return {
        "id": str(uuid.uuid4()),
        "created_at": stamp,
        "modified_at": None,
        "status": "paid",
        "paid": True,
        "checkout_id": checkout["id"],
        "customer_id": checkout["customer_id"],
        "product_id": checkout["product_id"],
        "discount_id": checkout["discount_id"],
        "subscription_id": checkout["subscription_id"],
        "billing_reason": "subscription_create" if checkout["subscription_id"] else "purchase",
        "billing_name": checkout["customer_billing_name"],
        "billing_address": checkout["customer_billing_address"],
        "invoice_number": None,
        "is_invoice_generated": False,
        "receipt_number": None,
        "currency": checkout["currency"],
        "subtotal_amount": checkout["amount"],  # on an order: before discount
        "discount_amount": checkout["discount_amount"],
        "net_amount": checkout["net_amount"],
        "tax_amount": tax,
        "total_amount": checkout["total_amount"],
        "applied_balance_amount": 0,
        "due_amount": 0,
        "refunded_amount": 0,
        "refunded_tax_amount": 0,
        "refundable_amount": checkout["net_amount"],
        "refundable_tax_amount": tax,
        "platform_fee_amount": 0,
        "platform_fee_currency": None,
        "description": checkout["product"]["name"],
        "units": None,  # seat-based orders only; polar-sdk requires the key
        "metadata": dict(checkout["metadata"]),
        "custom_field_data": {},
        "organization_id": checkout["organization_id"],
        "customer": _order_customer(checkout, stamp),
        "product": {**product, "metadata": {}},
        "discount": None,
        "subscription": None,
        "items": [
            {
                "id": str(uuid.uuid4()),
                "created_at": stamp,
                "modified_at": None,
                "label": checkout["product"]["name"],
                "amount": checkout["net_amount"],
                "tax_amount": tax,
                "proration": False,
                "product_price_id": checkout["product_price_id"],
                # polar-sdk requires these two; Polar's 2026-10 schema does not list them
                "start_timestamp": None,
                "end_timestamp": None,
            }
        ],
    }


def _order_customer(checkout: Mapping[str, Any], stamp: str) -> dict[str, Any]:
    return {
        "id": checkout["customer_id"],
        "created_at": stamp,
        "modified_at": None,
        "metadata": dict(checkout["customer_metadata"]),
        "external_id": checkout["external_customer_id"],
        "email": checkout["customer_email"],
        "email_verified": False,
        "type": "individual",
        "name": checkout["customer_name"],
        "billing_name": checkout["customer_billing_name"],
        "billing_address": checkout["customer_billing_address"],
        "tax_id": None,
        "organization_id": checkout["organization_id"],
        "deleted_at": None,
        "first_user_event_at": None,
        "avatar_url": None,
    }


def _billing_address_fields(*, require_full: bool) -> dict[str, str]:
    """Polar asks for the country only, unless the full address is required."""
    rest = "required" if require_full else "disabled"
    return {"country": "required"} | dict.fromkeys(
        ("state", "city", "postal_code", "line1", "line2"), rest
    )


def _polar_address(fields: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("line1", "line2", "postal_code", "city", "state")
    return {key: fields.get(key) for key in keys} | {"country": fields["country"]}


def _dump(address: _Address | None) -> dict[str, Any] | None:
    return None if address is None else address.model_dump()


def _iso(moment: datetime) -> str:
    # Fixed width (always microseconds), so these strings sort and compare as times.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
