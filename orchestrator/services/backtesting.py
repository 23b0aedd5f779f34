"""Routing backtests over the history: recorded checkouts from the read models, replayed
through candidate rules (`orchestrator.routing.backtest`, pure).

The request each checkout was routed with is rebuilt from the sessions read model the way
`RouteRequest.for_create` built it: the requested amount (else the total), the
customer's country, the mode and the metadata. Sessions are read with the query API's own
keyset pages, newest first, from ``since`` on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from events.values import Mode, Provider, SessionStatus
from orchestrator.routing.backtest import BacktestReport, RecordedCheckout, backtest
from orchestrator.routing.engine import RouteRequest
from orchestrator.routing.rules import RoutingRules
from projections import ReadModels
from projections.queries import MAX_PAGE, SessionFilters
from projections.schemas import CheckoutSession

__all__ = ["recorded_checkout", "recorded_checkouts", "run_backtest"]


def recorded_checkout(session: CheckoutSession) -> RecordedCheckout:
    amount = session.amount_requested if session.amount_requested is not None else session.amount
    request = RouteRequest(
        session_id=session.id,
        currency=session.currency,
        amount=amount,
        country=session.customer_country,
        mode=Mode(session.mode),
        metadata=session.metadata,
    )
    provider = Provider(session.provider) if session.provider else None
    return RecordedCheckout(
        request=request, provider=provider, status=SessionStatus(session.status)
    )


async def recorded_checkouts(
    reads: ReadModels, since: datetime | None = None, *, limit: int | None = None
) -> AsyncIterator[RecordedCheckout]:
    """Every recorded checkout created at or after ``since`` (at most ``limit``)."""
    cursor: str | None = None
    seen = 0
    while True:
        page = await reads.sessions(
            SessionFilters(created_from=since), limit=MAX_PAGE, cursor=cursor
        )
        for session in page.data:
            if limit is not None and seen >= limit:
                return
            seen += 1
            yield recorded_checkout(session)
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
