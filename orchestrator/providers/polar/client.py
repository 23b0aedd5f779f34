"""Polar over HTTP: a small typed httpx client and the `PaymentProvider` adapter.

Why not ``polar-sdk``: the 1.x SDK pins a *beta* ``adaptix`` (a pre-release in our
dependency set for four endpoints), accepts no custom HTTP client (so no
``httpx.MockTransport`` in unit tests, no shared connection pool, no per-call timeout
of our choosing) and raises its own exception tree that we would translate anyway; the
0.x generation (``polar_sdk``) matches the seed but not today's API. Four endpoints
over httpx, with the mapping kept in the pure `transformers`, is less code than the
adapter around the SDK would be.

Endpoints (``Authorization: Bearer <token>``): ``POST /v1/checkouts/``,
``GET /v1/checkouts/{id}``, ``PATCH /v1/checkouts/{id}``, ``GET /v1/checkouts/``.
Every request names the API version it speaks, ``Polar-Version: 2026-10`` (Polar's
server picks the schema by that header and falls back to its default version without it;
``polar-sdk`` sends the same), so a new default on Polar's side cannot change our wire.

Errors stop here: timeout, connection failure, 5xx, 408 and 429 become
`ProviderUnavailable` (retryable); any other 4xx becomes `ProviderRejected`. Neither
carries the token, the ``client_secret`` nor a response body.

Polar documents no idempotency key. So that a redelivered open command does not open a
second checkout, the attempt's key travels in the checkout's metadata and `open_session`
first looks for it among the newest checkouts of the product (``dedupe_lookup``).
Polar has no expire endpoint (its own task expires checkouts): `expire_session` raises
`UnsupportedOperation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from events.money import CurrencyCode
from events.values import Mode, Provider
from orchestrator.providers.base import (
    Capabilities,
    OpenRequest,
    ProviderRejected,
    ProviderSession,
    ProviderUnavailable,
    UnsupportedOperation,
    WebhookEvent,
)
from orchestrator.providers.polar import transformers

__all__ = ["API_VERSION", "PolarApi", "PolarConfig", "PolarProvider"]

PROVIDER = Provider.POLAR
API_VERSION = "2026-10"  # the version of docs/openapi/2026-10.openapi.json we speak
_LOOKUP_PAGE = 100
_MIN_AMOUNTS = {
    "USD": 50,
    "EUR": 50,
    "GBP": 30,
    "CAD": 50,
    "AUD": 50,
    "CHF": 50,
    "SEK": 300,
    "NOK": 300,
    "DKK": 250,
    "JPY": 50,
}


class PolarConfig(BaseModel):
    """What the Polar adapter needs; secrets are `SecretStr` and never logged."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    access_token: SecretStr
    webhook_secret: SecretStr
    payment_product_id: str = Field(min_length=1)
    subscription_product_id: str | None = None
    base_url: str = "https://api.polar.sh"
    timeout_seconds: float = Field(default=10.0, gt=0)
    livemode: bool = False
    # Polar charges through Stripe: Stripe's minimum charge per currency (minor units).
    # The same conservative list as the router's default rules; check your organisation's.
    min_amounts: dict[CurrencyCode, int] = Field(default_factory=lambda: dict(_MIN_AMOUNTS))

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset(self.min_amounts)

    dedupe_lookup: bool = True


class PolarApi:
    """The four checkout endpoints; returns Polar's JSON objects as dicts."""

    def __init__(
        self, config: PolarConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=config.base_url,
            headers={
                "Authorization": f"Bearer {config.access_token.get_secret_value()}",
                "Accept": "application/json",
                "Polar-Version": API_VERSION,
            },
            timeout=config.timeout_seconds,
            transport=transport,
        )

    async def create_checkout(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._object("create", "POST", "/v1/checkouts/", json=body)

    async def get_checkout(self, checkout_id: str) -> dict[str, Any]:
        return await self._object("retrieve", "GET", f"/v1/checkouts/{_segment(checkout_id)}")

    async def update_checkout(self, checkout_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        path = f"/v1/checkouts/{_segment(checkout_id)}"
        return await self._object("update", "PATCH", path, json=body)

    async def list_checkouts(
        self,
        *,
        page: int = 1,
        limit: int = 10,
        product_id: str | None = None,
        status: str | None = None,
        sorting: str | None = None,
    ) -> list[dict[str, Any]]:
        params = {"page": page, "limit": limit, "product_id": product_id, "status": status}
        params["sorting"] = sorting
        query = {key: value for key, value in params.items() if value is not None}
        page_body = await self._object("list", "GET", "/v1/checkouts/", params=query)
        items = page_body.get("items")
        if not isinstance(items, list):
            raise ProviderUnavailable(PROVIDER, "Polar list answer has no items", operation="list")
        return [item for item in items if isinstance(item, dict)]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _object(
        self, operation: str, method: str, path: str, **kwargs: Any
    ) -> dict[str, Any]:
        response = await self._send(operation, method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ProviderUnavailable(PROVIDER, f"Polar {operation}: answer is not a JSON object")
        return body

    async def _send(self, operation: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(
                PROVIDER, f"Polar {operation} timed out", operation=operation
            ) from exc
        except httpx.TransportError as exc:
            message = f"Polar {operation}: {type(exc).__name__}"
            raise ProviderUnavailable(PROVIDER, message, operation=operation) from exc
        _raise_for_status(operation, response)
        return response


def _segment(value: str) -> str:
    # An id is one path segment: refuse anything that would change the path.
    if not value or any(ch in value for ch in "/?#%") or value in {".", ".."}:
        raise ProviderRejected(PROVIDER, "not a Polar checkout id", provider_session_id=value[:64])
    return value


def _raise_for_status(operation: str, response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    details = {"operation": operation, "status_code": status}
    if status >= 500 or status in {408, 429}:
        raise ProviderUnavailable(PROVIDER, f"Polar {operation} answered {status}", **details)
    raise ProviderRejected(
        PROVIDER, f"Polar {operation} answered {status}", error=_error_type(response), **details
    )


def _error_type(response: httpx.Response) -> str | None:
    # Only the error's type: Polar's validation details echo the request (emails, metadata).
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None


class PolarProvider:
    """`PaymentProvider` for Polar."""

    def __init__(
        self,
        config: PolarConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self._api = PolarApi(config, transport=transport)

    @property
    def name(self) -> Provider:
        return PROVIDER

    @property
    def api(self) -> PolarApi:
        return self._api

    @property
    def capabilities(self) -> Capabilities:
        modes = {Mode.PAYMENT}
        if self._config.subscription_product_id is not None:
            modes.add(Mode.SUBSCRIPTION)
        return Capabilities(
            currencies=self._config.currencies,
            modes=frozenset(modes),
            min_amount=dict(self._config.min_amounts),
        )

    async def open_session(self, request: OpenRequest) -> ProviderSession:
        body = transformers.build_create_body(
            request,
            payment_product_id=self._config.payment_product_id,
            subscription_product_id=self._config.subscription_product_id,
        )
        self._check_amount(request.amount.currency, body["prices"][body["products"][0]][0])
        if self._config.dedupe_lookup:
            existing = await self._find_attempt(body["products"][0], request.idempotency_key)
            if existing is not None:
                return existing
        checkout = await self._api.create_checkout(body)
        return self._session(checkout)

    async def retrieve_session(self, provider_session_id: str) -> ProviderSession:
        return self._session(await self._api.get_checkout(provider_session_id))

    async def expire_session(self, provider_session_id: str) -> ProviderSession:  # noqa: ARG002
        raise UnsupportedOperation(PROVIDER, "expire")

    def verify_webhook(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> WebhookEvent:
        return transformers.verify_webhook(
            self._config.webhook_secret, headers, body, now, livemode=self._config.livemode
        )

    async def aclose(self) -> None:
        await self._api.aclose()

    def _check_amount(self, currency: str, price: Mapping[str, Any]) -> None:
        minimum = self._config.min_amounts.get(currency)
        if minimum is None:
            message = f"Polar is not configured for {currency}"
            raise ProviderRejected(PROVIDER, message, currency=currency)
        if price["price_amount"] < minimum:
            message = f"Polar charges at least {minimum} minor units of {currency}"
            raise ProviderRejected(PROVIDER, message, currency=currency)

    async def _find_attempt(self, product_id: str, key: str) -> ProviderSession | None:
        recent = await self._api.list_checkouts(
            product_id=product_id, limit=_LOOKUP_PAGE, sorting="-created_at"
        )
        for checkout in recent:
            metadata = checkout.get("metadata")
            if isinstance(metadata, dict) and metadata.get(transformers.ATTEMPT_KEY) == key:
                return self._session(checkout)
        return None

    def _session(self, checkout: Mapping[str, Any]) -> ProviderSession:
        return transformers.checkout_to_provider_session(checkout, livemode=self._config.livemode)
