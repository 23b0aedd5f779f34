"""Routing backtests over the history: recorded checkouts from the read models, replayed
through candidate rules (`orchestrator.routing.backtest`, pure).

The request each checkout was routed with is rebuilt from its ``requested`` event (the
timeline read model), the way `RouteRequest.for_create` built it from the command: the
requested total, the customer's country (else the address's), the mode, the metadata.
Not from the sessions read model's current row: a provider's webhook may since have
filled in another country (the card's billing address, say). The outcome and the
provider that took it come from the sessions read model. Sessions are read with the query
API's own keyset pages, newest first, from ``since`` on; their timelines a few at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

from events.catalog import CheckoutRequested, event_adapter
from events.values import Customer, Mode, Provider, SessionStatus
from orchestrator.routing.backtest import BacktestReport, RecordedCheckout, backtest
from orchestrator.routing.engine import RouteRequest
from orchestrator.routing.rules import RoutingRules
from projections import ReadModels
from projections.queries import MAX_PAGE, SessionFilters
from projections.schemas import CheckoutSession

__all__ = ["recorded_checkouts", "request_of", "run_backtest"]

TIMELINES_AT_ONCE = 16


def request_of(session_id: str, requested: CheckoutRequested) -> RouteRequest:
    """The routing request of a recorded ``requested`` event."""
    customer = requested.customer  # sealed or erased, it keeps the routing country in clear
    address = customer.address if isinstance(customer, Customer) else None
    address_country = address.country if address else None
    return RouteRequest(
        session_id=session_id,
        currency=requested.amount.currency,
        amount=requested.amount.total,
        country=customer.country or address_country,
        mode=requested.mode,
        metadata=requested.metadata,
    )


def _from_row(session: CheckoutSession) -> RouteRequest:
    """Only for a session whose timeline lost its ``requested`` event (never, normally)."""
    return RouteRequest(
        session_id=session.id,
        currency=session.currency,
        amount=session.amount_requested if session.amount_requested is not None else session.amount,
        country=session.customer_country,
        mode=Mode(session.mode),
        metadata=session.metadata,
    )


async def _recorded(reads: ReadModels, session: CheckoutSession) -> RecordedCheckout:
    events = await reads.events(session.id)
    first = next((e for e in events if e.type == "requested"), None)
    requested = event_adapter.validate_python(first.payload) if first else None
    request = (
        request_of(session.id, requested)
        if isinstance(requested, CheckoutRequested)
        else _from_row(session)
    )
    provider = Provider(session.provider) if session.provider else None
    return RecordedCheckout(
        request=request, provider=provider, status=SessionStatus(session.status)
    )


async def recorded_checkouts(
    reads: ReadModels, since: datetime | None = None, *, limit: int | None = None
) -> AsyncIterator[RecordedCheckout]:
    """Every recorded checkout created at or after ``since`` (at most ``limit``, newest)."""
    cursor: str | None = None
    left = limit
    gate = asyncio.Semaphore(TIMELINES_AT_ONCE)

    async def one(session: CheckoutSession) -> RecordedCheckout:
        async with gate:
            return await _recorded(reads, session)

    while left is None or left > 0:
        size = MAX_PAGE if left is None else min(MAX_PAGE, left)
        page = await reads.sessions(SessionFilters(created_from=since), limit=size, cursor=cursor)
        for checkout in await asyncio.gather(*(one(s) for s in page.data)):
            yield checkout
        left = None if left is None else left - len(page.data)
        cursor = page.next_cursor
        if cursor is None:
            return


async def run_backtest(
    reads: ReadModels,
    candidate: RoutingRules,
    since: datetime | None = None,
    *,
    limit: int | None = None,
) -> BacktestReport:
    return backtest(candidate, [c async for c in recorded_checkouts(reads, since, limit=limit)])
