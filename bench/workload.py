"""Synthetic, realistic checkout lifecycles, to load the projections in tests and measurements.

`lifecycle(rng, session_id, start)` returns the events of one session, each a command's
worth, along paths the decider allows (requested -> routed -> opened -> completed, with
processing, delayed payments, fallbacks, failures, expiries and cancellations mixed in).
`drive` appends many sessions concurrently through an `Append` the caller provides (the
real event store, wired by the composition root or a test), and returns each session's
last stream sequence. Deterministic for a given seed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from events.catalog import (
    AsyncPaymentFailed,
    AsyncPaymentSucceeded,
    CheckoutCanceled,
    CheckoutCompleted,
    CheckoutEvent,
    CheckoutExpired,
    CheckoutRequested,
    CheckoutRouted,
    DroppedCandidate,
    PaymentProcessing,
    ProviderCallFailed,
    ProviderSessionOpened,
    RoutingExplanation,
)
from events.values import (
    Amounts,
    Customer,
    LineItem,
    Mode,
    PaymentStatus,
    Provider,
    ProviderReferences,
    RequestedAmount,
    SessionUrls,
)

__all__ = ["Append", "drive", "lifecycle", "session_ids"]

Append = Callable[[str, Sequence[CheckoutEvent], int], Awaitable[int]]
"""(session id, events of one command, expected last sequence) -> new last sequence"""

_CURRENCIES = ("USD", "EUR", "GBP", "XOF", "JPY")
_COUNTRIES = ("US", "FR", "GB", "SN", "JP", "DE")
_PROVIDERS = tuple(Provider)


def session_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{index:07d}" for index in range(count)]


def _requested(rng: random.Random, sid: str, at: datetime) -> CheckoutRequested:
    currency = rng.choice(_CURRENCIES)
    items = tuple(
        LineItem(name=f"item {n}", quantity=rng.randint(1, 3), unit_amount=rng.randint(100, 9000))
        for n in range(rng.randint(0, 2))
    )
    amount = None if items else rng.randint(100, 50_000)
    n = rng.randint(1, 500)
    return CheckoutRequested(
        session_id=sid,
        occurred_at=at,
        mode=Mode.PAYMENT,
        amount=RequestedAmount(currency=currency, amount=amount, line_items=items),
        customer=Customer(email=f"buyer{n}@example.com", country=rng.choice(_COUNTRIES)),
        urls=SessionUrls(
            success_url="https://shop.example/ok", cancel_url="https://shop.example/no"
        ),
        metadata={"order": f"o-{rng.randint(1, 10**6)}"},
        client_reference_id=f"ref-{n}",
        expires_at=at + timedelta(hours=1),
    )


def _routed(rng: random.Random, sid: str, at: datetime, provider: Provider) -> CheckoutRouted:
    others = [p for p in _PROVIDERS if p is not provider]
    dropped = tuple(DroppedCandidate(provider=p, reason="currency") for p in others[:1])
    return CheckoutRouted(
        session_id=sid,
        occurred_at=at,
        provider=provider,
        attempt=1,
        explanation=RoutingExplanation(
            rules_version=f"v{rng.randint(1, 3)}",
            matched_rule=rng.choice(["default", "eu", "xof", None]),
            candidates=(provider, *others[1:]),
            dropped=dropped,
        ),
    )


def _opened(sid: str, at: datetime, provider: Provider, attempt: int) -> ProviderSessionOpened:
    return ProviderSessionOpened(
        session_id=sid,
        occurred_at=at,
        provider=provider,
        attempt=attempt,
        provider_session_id=f"{provider.value}_{sid}_{attempt}",
        checkout_url=f"https://pay.example/{provider.value}/{sid}",
        expires_at=at + timedelta(minutes=30),
        has_client_secret=provider is Provider.STRIPE,
    )


def _completed(
    rng: random.Random, request: CheckoutRequested, at: datetime, status: PaymentStatus
) -> CheckoutCompleted:
    total = request.amount.total or 0
    tax = rng.choice([0, total // 10])
    return CheckoutCompleted(
        session_id=request.session_id,
        occurred_at=at,
        payment_status=status,
        amounts=Amounts(
            currency=request.amount.currency, subtotal=total, tax=tax, total=total + tax
        ),
        customer=Customer(name="A Buyer"),
        references=ProviderReferences(payment_intent=f"pi_{request.session_id}"),
    )


def _tail(  # noqa: PLR0911 - one return per path
    rng: random.Random, request: CheckoutRequested, at: datetime, provider: Provider
) -> list[CheckoutEvent]:
    """What happens after routing, along one of the paths the decider allows."""
    sid = request.session_id
    ts = [at + timedelta(seconds=s) for s in range(1, 6)]
    roll = rng.random()
    if roll < 0.04:
        failed = ProviderCallFailed(
            session_id=sid, occurred_at=ts[0], provider=provider, attempt=1,
            error_code="unavailable", message="provider down", retryable=True,
        )  # fmt: skip
        return [failed]
    if roll < 0.12:
        fallback = next(p for p in _PROVIDERS if p is not provider)
        failed = ProviderCallFailed(
            session_id=sid, occurred_at=ts[0], provider=provider, attempt=1,
            error_code="rate_limited", message="try another", retryable=True, fallback=fallback,
        )  # fmt: skip
        opened = _opened(sid, ts[1], fallback, 2)
        return [failed, opened, _completed(rng, request, ts[2], PaymentStatus.PAID)]
    if roll < 0.18:
        return [CheckoutCanceled(session_id=sid, occurred_at=ts[0], reason="merchant")]
    opened = _opened(sid, ts[0], provider, 1)
    if roll < 0.28:
        return [opened, CheckoutExpired(session_id=sid, occurred_at=ts[1], reason="sweeper")]
    if roll < 0.38:
        unpaid = _completed(rng, request, ts[1], PaymentStatus.UNPAID)
        later: CheckoutEvent = (
            AsyncPaymentSucceeded(session_id=sid, occurred_at=ts[2])
            if rng.random() < 0.7
            else AsyncPaymentFailed(session_id=sid, occurred_at=ts[2], reason="declined")
        )
        return [opened, unpaid, later]
    if roll < 0.5:
        processing = PaymentProcessing(session_id=sid, occurred_at=ts[1], provider_status="pending")
        return [opened, processing, _completed(rng, request, ts[2], PaymentStatus.PAID)]
    return [opened, _completed(rng, request, ts[1], PaymentStatus.PAID)]


def lifecycle(rng: random.Random, session_id: str, start: datetime) -> list[CheckoutEvent]:
    """The events of one session, each one command's worth, in order."""
    at = start + timedelta(hours=rng.randint(0, 72), seconds=rng.randint(0, 3599))
    request = _requested(rng, session_id, at)
    if rng.random() < 0.03:
        return [
            request,
            CheckoutExpired(session_id=session_id, occurred_at=at + timedelta(hours=1)),
        ]
    provider = rng.choice(_PROVIDERS)
    routed = _routed(rng, session_id, at + timedelta(milliseconds=5), provider)
    return [request, routed, *_tail(rng, request, at, provider)]


async def drive(
    append: Append,
    lifecycles: Sequence[Sequence[CheckoutEvent]],
    *,
    concurrency: int = 32,
) -> dict[str, int]:
    """Append every lifecycle, event by event, ``concurrency`` sessions at a time."""
    last: dict[str, int] = {}
    queue = list(reversed(lifecycles))

    async def worker() -> None:
        while queue:
            events = queue.pop()
            sid = events[0].session_id
            version = 0
            for event in events:
                version = await append(sid, [event], version)
            last[sid] = version

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return last
