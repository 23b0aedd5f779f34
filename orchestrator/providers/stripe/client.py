"""Stripe Checkout through the official ``stripe`` SDK (async, httpx): the `PaymentProvider`.

- ``open_session`` sends the attempt's idempotency key (``OpenRequest.idempotency_key``),
  so a redelivered command gets the same Stripe session back, never a second one.
- ``retrieve_session`` expands ``line_items`` and ``setup_intent`` (where OpenMeter, for
  Kong, keeps the metadata); ``expire_session`` expires an open session
  (Stripe refuses once it is complete or expired: `ProviderRejected`).
- ``verify_webhook`` checks ``Stripe-Signature`` with the SDK (HMAC-SHA256 over
  ``f"{t}.{body}"``), then the timestamp against *our* clock in both directions: the SDK
  only rejects old timestamps and reads the wall clock, so a timestamp in the future (a
  replay prepared in advance, or a skewed signer) would pass it. Pure: no I/O.

Errors stop here: connection failures, timeouts, 429 and 5xx become `ProviderUnavailable`
(retryable); 4xx become `ProviderRejected`, carrying Stripe's error code, param and
request id, never the API key or a response body.
"""

from __future__ import annotations

import itertools
import json
import logging
import ssl
from collections.abc import Awaitable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import httpx
import stripe
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from events.values import Provider
from orchestrator.providers.base import (
    Capabilities,
    OpenRequest,
    ProviderError,
    ProviderRejected,
    ProviderSession,
    ProviderUnavailable,
    WebhookEvent,
    WebhookRejected,
)
from orchestrator.providers.stripe import transformers

__all__ = [
    "SIGNATURE_HEADER",
    "FormBodyHTTPXClient",
    "SpreadPools",
    "StripeConfig",
    "StripeProvider",
    "translate_error",
]

PROVIDER = Provider.STRIPE
SIGNATURE_HEADER = "Stripe-Signature"

# The SDK logs every request's parameters and every response body at DEBUG on the
# "stripe" logger: customer emails, addresses and embedded checkouts' client secrets.
# INFO keeps its one-line request/response summaries; a user who wants the bodies sets
# the level back explicitly (and takes the personal data in the logs with it).
logging.getLogger("stripe").setLevel(logging.INFO)
_T = TypeVar("_T")


class StripeConfig(BaseModel):
    """What the Stripe adapter needs; secrets are `SecretStr` and never logged."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr
    webhook_secret: SecretStr
    api_base: str | None = None  # None: api.stripe.com; the sandbox: the simulator's base_url
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_network_retries: int = Field(default=2, ge=0, le=10)
    webhook_tolerance_seconds: int = Field(default=300, gt=0)


POOL_CONNECTIONS = 16


class SpreadPools(httpx.AsyncClient):
    """An httpx client whose requests go, in turn, to several connection pools of at most
    `POOL_CONNECTIONS` connections each.

    httpcore's pool looks at every connection it holds each time a request starts or
    ends, and for each idle one counts the idle ones again: with 256 connections alive
    that was over half of a command worker's CPU at 200 creates/s (docs/performance.md).
    Small pools keep that cost small; the requests themselves are the same.
    """

    def __init__(self, *, verify: ssl.SSLContext | bool, max_connections: int) -> None:
        super().__init__(verify=verify)
        per_pool = min(POOL_CONNECTIONS, max_connections)
        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        self._pools = [
            httpx.AsyncClient(verify=verify, limits=limits)
            for _ in range(max(1, -(-max_connections // per_pool)))
        ]
        self._turn = itertools.cycle(self._pools)

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        return await next(self._turn).send(request, **kwargs)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()
        await super().aclose()


class FormBodyHTTPXClient(stripe.HTTPXClient):
    """``stripe.HTTPXClient`` sending the form body as ``content=``.

    stripe 16 passes the encoded form as ``data=<str>``, which httpx deprecates (a
    DeprecationWarning on every POST, an error under ``-W error``); same bytes on the wire.

    Its connections are spread over pools of at most `POOL_CONNECTIONS` (`SpreadPools`),
    together keeping ``max_connections`` connections alive: the SDK's client keeps httpx's
    default of 20, and with more calls in flight (creates at a provider's real latency)
    every call beyond the 20th opened and closed a connection of its own; one pool of a
    few hundred connections costs more still (see `SpreadPools`).
    """

    def __init__(self, timeout: float = 80, *, max_connections: int = 256, **kwargs: Any) -> None:
        super().__init__(timeout=timeout, **kwargs)
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=stripe.ca_bundle_path)
            if self._verify_ssl_certs
            else False
        )
        self._client_async = SpreadPools(verify=verify, max_connections=max_connections)

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> Any:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        data = kwargs.pop("data", None)
        if isinstance(data, str | bytes):
            kwargs["content"] = data
        elif data:
            kwargs["data"] = data
        return args, kwargs


class StripeProvider:
    def __init__(
        self, config: StripeConfig, *, http_client: stripe.HTTPClient | None = None
    ) -> None:
        self._config = config
        self._http = http_client or FormBodyHTTPXClient(timeout=config.timeout_seconds)
        self._client = stripe.StripeClient(
            config.api_key.get_secret_value(),
            base_addresses={"api": config.api_base} if config.api_base else None,
            http_client=self._http,
            max_network_retries=config.max_network_retries,
        )
        self._capabilities = transformers.capabilities()

    @property
    def name(self) -> Provider:
        return PROVIDER

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def open_session(self, request: OpenRequest) -> ProviderSession:
        params = transformers.create_params(request)  # ProviderRejected before any call
        session = await _call(
            self._client.v1.checkout.sessions.create_async(
                params, options={"idempotency_key": request.idempotency_key}
            )
        )
        return transformers.session_from_stripe(session)

    async def retrieve_session(self, provider_session_id: str) -> ProviderSession:
        session = await _call(
            self._client.v1.checkout.sessions.retrieve_async(
                provider_session_id, {"expand": ["line_items", "setup_intent"]}
            )
        )
        return transformers.session_from_stripe(session)

    async def expire_session(self, provider_session_id: str) -> ProviderSession:
        session = await _call(self._client.v1.checkout.sessions.expire_async(provider_session_id))
        return transformers.session_from_stripe(session)

    def verify_webhook(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> WebhookEvent:
        header = _header(headers, SIGNATURE_HEADER)
        secret = self._config.webhook_secret.get_secret_value()
        try:
            # tolerance=0: the SDK checks the signature only; the time check below uses `now`
            event = stripe.Webhook.construct_event(body, header, secret, tolerance=0)
        except stripe.SignatureVerificationError:
            raise WebhookRejected(PROVIDER, "signature does not match") from None
        except (ValueError, UnicodeDecodeError):
            raise WebhookRejected(PROVIDER, "body is not a JSON Stripe event") from None
        _check_timestamp(header, now, self._config.webhook_tolerance_seconds)
        try:
            return transformers.webhook_event_from_stripe(event)
        except (KeyError, TypeError, ValueError) as exc:
            raise WebhookRejected(PROVIDER, f"malformed event: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]  # untyped in the SDK


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    raise WebhookRejected(PROVIDER, f"no {name} header")


def _check_timestamp(header: str, now: datetime, tolerance: int) -> None:
    stamps = [part[2:] for part in header.split(",") if part.startswith("t=")]
    try:
        signed_at = int(stamps[0])
    except (IndexError, ValueError):
        raise WebhookRejected(PROVIDER, "no timestamp in the signature") from None
    skew = now.timestamp() - signed_at
    if skew > tolerance:
        raise WebhookRejected(PROVIDER, f"timestamp is {int(skew)} s old (> {tolerance} s)")
    if -skew > tolerance:
        raise WebhookRejected(
            PROVIDER, f"timestamp is {int(-skew)} s in the future (> {tolerance} s)"
        )


async def _call(call: Awaitable[_T]) -> _T:
    try:
        return await call
    except stripe.StripeError as exc:
        raise translate_error(exc) from None


def translate_error(exc: stripe.StripeError) -> ProviderError:
    """A Stripe SDK error -> our tree. Never carries the key nor a response body."""
    details: dict[str, Any] = {
        "http_status": exc.http_status,
        "stripe_code": exc.code,
        "request_id": exc.request_id,
    }
    param = getattr(exc, "param", None)
    if param:
        details["param"] = param
    message = f"Stripe: {_safe_message(exc)}"
    status = exc.http_status
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError | stripe.APIError) or (
        status is not None and status >= 500
    ):
        return ProviderUnavailable(PROVIDER, message, **details)
    return ProviderRejected(PROVIDER, message, **details)


def _safe_message(exc: stripe.StripeError) -> str:
    """Stripe's user message; an invalid key is echoed in it, masked, but we drop it anyway."""
    if isinstance(exc, stripe.AuthenticationError):
        return "authentication failed (check the API key)"
    text = exc.user_message or type(exc).__name__
    return text if isinstance(text, str) else json.dumps(text)
