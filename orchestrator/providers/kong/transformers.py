"""Kong Konnect / OpenMeter billing <-> the canonical model: pure request and response mapping.

Kong's billing opens a *Stripe* Checkout Session in ``setup`` mode for a billing
customer (a ULID) through ``POST /v3/openmeter/customers/{customerId}/billing/stripe/
checkout-sessions`` with ``{"stripe_options": {...}}`` (snake_case, upper-case currency,
``ui_mode`` ``hosted`` | ``embedded``, ``expires_at`` in Unix seconds). The answer
(``BillingAppStripeCreateCheckoutSessionResult``, seed 003) has no amounts, RFC 3339
times and Stripe's ``status`` string.

- Only setup mode exists: any other mode is `ProviderRejected` before any call.
- The billing customer comes from metadata ``billing_customer_id`` or
  ``customer.provider_customer_id``; it must be a ULID. OpenMeter puts the metadata on
  the session's SetupIntent (``setup_intent_data.metadata``, plus its own
  ``om_customer_id``), not on the Checkout Session, and answers the session's (empty)
  metadata: so the answer names our session only through the request that opened it,
  and a session read back from Stripe (``setup_intent`` expanded) names its Kong
  customer and our session through the SetupIntent's metadata.
- Status: Stripe's ``open | complete | expired``; a setup session never takes money, so
  its payment status is ``no_payment_required``. A missing or unknown status is
  pending (open, unpaid), never complete.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from events.values import Customer, Mode, PaymentStatus, Provider, ProviderReferences, SessionStatus
from events.values import SessionUrls as Urls
from orchestrator.providers.base import (
    Capabilities,
    OpenRequest,
    ProviderError,
    ProviderRejected,
    ProviderSession,
)
from orchestrator.providers.stripe.transformers import (
    ATTEMPT_METADATA_KEY,
    SESSION_ID_METADATA_KEY,
    STRIPE_CURRENCIES,
    check_client_reference,
    metadata_with,
)

__all__ = [
    "BILLING_CUSTOMER_METADATA_KEY",
    "ULID",
    "capabilities",
    "checkout_sessions_path",
    "create_body",
    "customer_id_of",
    "from_stripe_session",
    "session_from_kong",
]

PROVIDER = Provider.KONG
BILLING_CUSTOMER_METADATA_KEY = "billing_customer_id"
OPENMETER_CUSTOMER_METADATA_KEY = "om_customer_id"  # OpenMeter's own, on the SetupIntent
ULID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
_STATUS = {
    "open": SessionStatus.OPEN,
    "complete": SessionStatus.COMPLETE,
    "expired": SessionStatus.EXPIRED,
}
_REQUIRED = ("customer_id", "stripe_customer_id", "session_id", "setup_intent_id", "created_at")


def capabilities() -> Capabilities:
    return Capabilities(
        currencies=STRIPE_CURRENCIES,
        modes=frozenset({Mode.SETUP}),
        hosted_requires_success_url=True,
    )


def checkout_sessions_path(customer_id: str) -> str:
    return f"/v3/openmeter/customers/{customer_id}/billing/stripe/checkout-sessions"


def customer_id_of(request: OpenRequest) -> str:
    """The billing customer (ULID): metadata ``billing_customer_id``, else the customer's id."""
    customer_id = (
        request.metadata.get(BILLING_CUSTOMER_METADATA_KEY) or request.customer.provider_customer_id
    )
    if not customer_id:
        raise ProviderRejected(
            PROVIDER,
            f"Kong needs a billing customer: metadata {BILLING_CUSTOMER_METADATA_KEY!r} "
            "or customer.provider_customer_id",
        )
    if not ULID.match(customer_id):
        raise ProviderRejected(PROVIDER, "the Kong billing customer id is not a ULID")
    return customer_id


def create_body(request: OpenRequest) -> dict[str, Any]:
    """The JSON body of the create call; `ProviderRejected` for anything but setup mode."""
    if request.mode is not Mode.SETUP:
        raise ProviderRejected(
            PROVIDER, f"Kong opens setup-mode sessions only, not {request.mode.value}"
        )
    currency = request.amount.currency
    if currency not in STRIPE_CURRENCIES:
        raise ProviderRejected(PROVIDER, f"Stripe (behind Kong) does not take {currency}")
    check_client_reference(request, PROVIDER)
    ours = {
        BILLING_CUSTOMER_METADATA_KEY: customer_id_of(request),
        SESSION_ID_METADATA_KEY: request.session_id,
        ATTEMPT_METADATA_KEY: str(request.attempt),
    }
    options: dict[str, Any] = {
        "currency": currency,
        "ui_mode": request.ui_mode,
        "metadata": metadata_with(request, ours, PROVIDER),
    }
    options.update(_urls(request))
    if request.client_reference_id is not None:
        options["client_reference_id"] = request.client_reference_id
    if request.expires_at is not None:
        options["expires_at"] = int(request.expires_at.timestamp())
    return {"stripe_options": options}


def _urls(request: OpenRequest) -> dict[str, str]:
    urls = request.urls
    if request.ui_mode == "embedded":
        return {"return_url": urls.return_url} if urls.return_url else {}
    chosen = {"success_url": urls.success_url, "cancel_url": urls.cancel_url}
    return {key: value for key, value in chosen.items() if value is not None}


def statuses(status: object) -> tuple[SessionStatus, PaymentStatus]:
    mapped = _STATUS.get(str(status))
    if mapped is None:
        return SessionStatus.OPEN, PaymentStatus.UNPAID
    return mapped, PaymentStatus.NO_PAYMENT_REQUIRED


def session_from_kong(
    result: Mapping[str, Any], *, our_session_id: str | None = None
) -> ProviderSession:
    """``BillingAppStripeCreateCheckoutSessionResult`` -> canonical (no amounts: setup mode)."""
    missing = [key for key in _REQUIRED if not result.get(key)]
    if missing:
        raise ProviderError(PROVIDER, f"Kong answer lacks {', '.join(missing)}", retryable=False)
    if result.get("mode", "setup") != "setup":
        raise ProviderError(
            PROVIDER, f"unexpected Kong mode {result.get('mode')!r}", retryable=False
        )
    status, payment_status = statuses(result.get("status"))
    metadata = {str(k): str(v) for k, v in (result.get("metadata") or {}).items()}
    currency = result.get("currency")
    session_id = str(result["session_id"])
    return ProviderSession(
        provider=PROVIDER,
        provider_session_id=session_id,
        session_id=metadata.get(SESSION_ID_METADATA_KEY) or our_session_id,
        status=status,
        payment_status=payment_status,
        mode=Mode.SETUP,
        currency=currency.upper() if isinstance(currency, str) and currency else None,
        amounts=None,
        customer=Customer(
            provider_customer_id=str(result["customer_id"]), email=result.get("customer_email")
        ),
        checkout_url=result.get("url") if status is SessionStatus.OPEN else None,
        urls=Urls(
            success_url=result.get("success_url"),
            cancel_url=result.get("cancel_url"),
            return_url=result.get("return_url"),
        ),
        client_secret=result.get("client_secret"),
        created_at=_rfc3339(result["created_at"]),
        expires_at=_rfc3339(result.get("expires_at")),
        metadata=metadata,
        client_reference_id=result.get("client_reference_id"),
        livemode=session_id.startswith("cs_live_"),
        references=ProviderReferences(
            setup_intent=str(result["setup_intent_id"]),
            customer=str(result["stripe_customer_id"]),
        ),
        raw={k: v for k, v in result.items() if k != "client_secret"},
    )


def from_stripe_session(session: ProviderSession) -> ProviderSession:
    """A Kong-made session read back from Stripe, named as Kong's (its billing customer).

    OpenMeter keeps the metadata on the SetupIntent: read there when Stripe's answer has
    it expanded, the session's own metadata otherwise (older sessions, other setups).
    """
    intent = session.raw.get("setup_intent")
    intent_metadata = intent.get("metadata") if isinstance(intent, Mapping) else None
    metadata = {str(k): str(v) for k, v in (intent_metadata or {}).items()}
    metadata |= session.metadata
    customer_id = metadata.get(BILLING_CUSTOMER_METADATA_KEY) or metadata.get(
        OPENMETER_CUSTOMER_METADATA_KEY
    )
    customer = session.customer.model_copy(update={"provider_customer_id": customer_id})
    changes = {
        "provider": PROVIDER,
        "customer": customer,
        "session_id": session.session_id or metadata.get(SESSION_ID_METADATA_KEY),
    }
    return session.model_copy(update=changes)


def _rfc3339(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ProviderError(PROVIDER, f"bad RFC 3339 time {value!r}", retryable=False) from None
