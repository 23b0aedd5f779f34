"""Kong Konnect / OpenMeter billing over httpx: the `PaymentProvider` for setup sessions.

One documented call: ``POST {base}/v3/openmeter/customers/{customerId}/billing/stripe/
checkout-sessions`` (``Authorization: Bearer <token>``; base ``https://us.api.konghq.com``
or another region, ``http://HOST/api`` for a self-hosted OpenMeter). The PyPI
``openmeter`` package speaks only the older v1 API, so this is a small typed httpx call.

What Kong does not have, and what we do instead:

- **No retrieve, no expire, no webhooks to the merchant.** The session *is* a Stripe
  Checkout Session in the Stripe account connected to Kong's billing app. With
  ``KongConfig.stripe`` set (that account's key), `retrieve_session` and
  `expire_session` go to Stripe directly (the poller settles Kong sessions this way);
  without it they raise `UnsupportedOperation`. `verify_webhook` always raises
  `WebhookRejected`: Kong sends none.
- **No documented idempotency key.** We send ``Idempotency-Key`` anyway (ignored if
  unknown) and remember each attempt's session in-process (bounded), so a retried or
  redelivered open in this process returns the first session. Across a restart a
  redelivered open can create a second (setup-mode, money-free) session: see
  docs/providers.md.

Errors stop here: timeout, connection failure, 408, 429 and 5xx become
`ProviderUnavailable`; 400, 401, 403, 404 (unknown customer) and 410 (deleted) become
`ProviderRejected`. Neither carries the token nor a ``client_secret``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from events.values import Provider
from orchestrator.providers.base import (
    Capabilities,
    OpenRequest,
    ProviderError,
    ProviderRejected,
    ProviderSession,
    ProviderUnavailable,
    UnsupportedOperation,
    WebhookEvent,
    WebhookRejected,
)
from orchestrator.providers.kong import transformers
from orchestrator.providers.stripe.client import StripeConfig, StripeProvider

__all__ = ["KongConfig", "KongProvider"]

PROVIDER = Provider.KONG
_RETRYABLE_4XX = frozenset({408, 425, 429})
_MEMO_SIZE = 10_000


class KongConfig(BaseModel):
    """What the Kong adapter needs; secrets are `SecretStr` and never logged."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: SecretStr  # a Konnect personal or system access token
    base_url: str = "https://us.api.konghq.com"  # eu., au., me., in.; self-hosted: http://HOST/api
    timeout_seconds: float = Field(default=10.0, gt=0)
    stripe: StripeConfig | None = None  # the connected Stripe account: enables retrieve/expire


class KongProvider:
    def __init__(
        self, config: KongConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=config.base_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {config.token.get_secret_value()}",
                "Accept": "application/json",
            },
            timeout=config.timeout_seconds,
            transport=transport,
        )
        self._stripe = StripeProvider(config.stripe) if config.stripe else None
        self._opened: OrderedDict[str, ProviderSession] = OrderedDict()
        self._capabilities = transformers.capabilities()

    @property
    def name(self) -> Provider:
        return PROVIDER

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def open_session(self, request: OpenRequest) -> ProviderSession:
        body = transformers.create_body(request)  # ProviderRejected before any call
        key = request.idempotency_key
        if key in self._opened:
            return await self._current(self._opened[key])
        customer_id = transformers.customer_id_of(request)
        result = await self._post(
            transformers.checkout_sessions_path(customer_id), body, {"Idempotency-Key": key}
        )
        session = transformers.session_from_kong(result, our_session_id=request.session_id)
        self._remember(key, session)
        return session

    async def retrieve_session(self, provider_session_id: str) -> ProviderSession:
        stripe = self._require_stripe("retrieve")
        try:
            session = await stripe.retrieve_session(provider_session_id)
        except ProviderError as exc:
            raise _as_kong(exc) from None
        return transformers.from_stripe_session(session)

    async def expire_session(self, provider_session_id: str) -> ProviderSession:
        stripe = self._require_stripe("expire")
        try:
            session = await stripe.expire_session(provider_session_id)
        except ProviderError as exc:
            raise _as_kong(exc) from None
        return transformers.from_stripe_session(session)

    def verify_webhook(
        self,
        headers: Mapping[str, str],  # noqa: ARG002 - part of the protocol
        body: bytes,  # noqa: ARG002
        now: datetime,  # noqa: ARG002
    ) -> WebhookEvent:
        raise WebhookRejected(PROVIDER, "kong sends no webhooks")

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._stripe is not None:
            await self._stripe.aclose()

    async def _current(self, session: ProviderSession) -> ProviderSession:
        """The remembered session, refreshed from Stripe when we can."""
        if self._stripe is None:
            return session
        return await self.retrieve_session(session.provider_session_id)

    def _remember(self, key: str, session: ProviderSession) -> None:
        self._opened[key] = session
        while len(self._opened) > _MEMO_SIZE:
            self._opened.popitem(last=False)

    def _require_stripe(self, operation: str) -> StripeProvider:
        if self._stripe is None:
            raise UnsupportedOperation(PROVIDER, f"{operation} (no Stripe account configured)")
        return self._stripe

    async def _post(
        self, path: str, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        try:
            response = await self._http.post(path, json=body, headers=dict(headers))
        except httpx.TimeoutException:
            raise ProviderUnavailable(PROVIDER, "Kong did not answer in time") from None
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(PROVIDER, f"Kong unreachable: {type(exc).__name__}") from None
        if response.is_success:
            return _json_object(response)
        raise _error(response)


def _as_kong(exc: ProviderError) -> ProviderError:
    """An error of the Stripe leg, reported as Kong's (health and routing count it there)."""
    details = {k: v for k, v in exc.details.items() if k not in {"provider", "retryable"}}
    message = f"via Stripe: {exc.message}"
    if isinstance(exc, ProviderUnavailable):
        return ProviderUnavailable(PROVIDER, message, **details)
    if isinstance(exc, ProviderRejected):
        return ProviderRejected(PROVIDER, message, **details)
    return ProviderError(PROVIDER, message, retryable=exc.retryable, **details)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        raise ProviderError(PROVIDER, "Kong answered with invalid JSON", retryable=False) from None
    if not isinstance(data, dict):
        raise ProviderError(PROVIDER, "Kong answered with a non-object", retryable=False)
    return data


def _error(response: httpx.Response) -> ProviderError:
    status = response.status_code
    detail = _problem_detail(response)
    message = f"Kong answered {status}: {detail}" if detail else f"Kong answered {status}"
    if status >= 500 or status in _RETRYABLE_4XX:
        return ProviderUnavailable(PROVIDER, message, http_status=status)
    return ProviderRejected(PROVIDER, message, http_status=status)


def _problem_detail(response: httpx.Response) -> str | None:
    """``detail`` (or ``title``) of an RFC 7807 problem, if the body is one; never the body."""
    try:
        data = response.json()
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    text = data.get("detail") or data.get("title")
    return str(text)[:300] if text else None
