"""lomi. over HTTP: a small typed httpx client and the `PaymentProvider` adapter.

Why not an SDK: PyPI's ``lomi`` and ``lomi-sdk`` both install a module named ``lomi``,
overwrite each other and call wrong paths (PROVIDERS.md). Three endpoints over httpx
(header ``X-API-KEY``): ``POST /checkout-sessions`` (with ``Idempotency-Key``, from
the session id and attempt, so a redelivered open command gets the same session back),
``GET /checkout-sessions/{id}`` and ``GET /checkout-sessions?status=&limit=&offset=``.

lomi has no update and no expire endpoint: `expire_session` raises
`UnsupportedOperation`; its sessions expire by themselves (60 minutes by default).

Errors stop here: timeout, connection failure, 5xx, 408 and 429 become
`ProviderUnavailable` (retryable); any other 4xx becomes `ProviderRejected`. Neither
carries the API key nor a response body.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

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
from orchestrator.providers.lomi import transformers

__all__ = ["LomiApi", "LomiConfig", "LomiProvider"]

PROVIDER = Provider.LOMI


class LomiConfig(BaseModel):
    """What the lomi adapter needs; secrets are `SecretStr` and never logged."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr
    webhook_secret: SecretStr
    base_url: str = "https://api.lomi.africa"
    timeout_seconds: float = Field(default=10.0, gt=0)


class LomiApi:
    """The checkout-session endpoints; returns lomi's JSON objects as dicts."""

    def __init__(
        self, config: LomiConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=config.base_url,
            headers={"X-API-KEY": config.api_key.get_secret_value(), "Accept": "application/json"},
            timeout=config.timeout_seconds,
            transport=transport,
        )

    async def create_checkout_session(
        self, body: Mapping[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key}
        answer = await self._json(
            "create", "POST", "/checkout-sessions", json=body, headers=headers
        )
        return _object("create", answer)

    async def get_checkout_session(self, checkout_session_id: str) -> dict[str, Any]:
        path = f"/checkout-sessions/{_segment(checkout_session_id)}"
        return _object("retrieve", await self._json("retrieve", "GET", path))

    async def list_checkout_sessions(
        self, *, status: str | None = None, limit: int = 20, offset: int = 0
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = status
        answer = await self._json("list", "GET", "/checkout-sessions", params=params)
        items = answer.get("data") if isinstance(answer, dict) else answer
        if not isinstance(items, list):
            raise ProviderUnavailable(PROVIDER, "lomi list answer is not a list", operation="list")
        return [item for item in items if isinstance(item, dict)]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _json(self, operation: str, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            message = f"lomi {operation} timed out"
            raise ProviderUnavailable(PROVIDER, message, operation=operation) from exc
        except httpx.TransportError as exc:
            message = f"lomi {operation}: {type(exc).__name__}"
            raise ProviderUnavailable(PROVIDER, message, operation=operation) from exc
        _raise_for_status(operation, response)
        try:
            return response.json()
        except ValueError:
            message = f"lomi {operation}: answer is not JSON"
            raise ProviderUnavailable(PROVIDER, message, operation=operation) from None


def _object(operation: str, answer: Any) -> dict[str, Any]:
    # Accept a bare session and one wrapped as {"data": {...}}.
    if isinstance(answer, dict) and "checkout_session_id" not in answer:
        answer = answer.get("data")
    if not isinstance(answer, dict) or not answer.get("checkout_session_id"):
        message = f"lomi {operation}: answer is not a checkout session"
        raise ProviderUnavailable(PROVIDER, message, operation=operation)
    return answer


def _segment(value: str) -> str:
    # An id is one path segment: refuse anything that would change the path.
    if not value or any(ch in value for ch in "/?#%") or value in {".", ".."}:
        raise ProviderRejected(PROVIDER, "not a lomi checkout session id")
    return value


def _raise_for_status(operation: str, response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    details = {"operation": operation, "status_code": status}
    if status >= 500 or status in {408, 429}:
        raise ProviderUnavailable(PROVIDER, f"lomi {operation} answered {status}", **details)
    raise ProviderRejected(PROVIDER, f"lomi {operation} answered {status}", **details)


class LomiProvider:
    """`PaymentProvider` for lomi."""

    def __init__(
        self, config: LomiConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._config = config
        self._api = LomiApi(config, transport=transport)

    @property
    def name(self) -> Provider:
        return PROVIDER

    @property
    def api(self) -> LomiApi:
        return self._api

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            currencies=transformers.SUPPORTED_CURRENCIES, modes=frozenset({Mode.PAYMENT})
        )

    async def open_session(self, request: OpenRequest) -> ProviderSession:
        body = transformers.build_create_body(request)
        created = await self._api.create_checkout_session(
            body, idempotency_key=request.idempotency_key
        )
        return transformers.to_provider_session(created)

    async def retrieve_session(self, provider_session_id: str) -> ProviderSession:
        found = await self._api.get_checkout_session(provider_session_id)
        return transformers.to_provider_session(found)

    async def expire_session(self, provider_session_id: str) -> ProviderSession:  # noqa: ARG002
        raise UnsupportedOperation(PROVIDER, "expire")

    def verify_webhook(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> WebhookEvent:
        return transformers.verify_webhook(self._config.webhook_secret, headers, body, now)

    async def aclose(self) -> None:
        await self._api.aclose()
