"""PostgreSQL stopped and restarted under load: queries fail typed, then everything recovers.

The real command service (with the provider simulators) takes a steady load of ``create``
commands; the read side runs its projector and serves the query API. Mid-load the
database is stopped (``pg_ctl stop -m fast``: every connection is cut) and, after a few
seconds, started again. A poller keeps asking the API for a session and a page of the list
throughout.

Promised: commands keep being accepted (the write side needs no Postgres); while the
database is down the API answers a typed ``503 query_unavailable``, never a 500 and never
a hang; after the restart queries answer again, read-your-writes works, and once the
projector caught up the read models equal the fold of the stream.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest

from orchestrator.bootstrap import Endpoints, orchestrator, read_side
from orchestrator.client import CheckoutClient
from orchestrator.sandbox.fleet import SandboxFleet
from projections.source import EventSource, read_all
from projections.status import caught_up
from tests.support.apps import settings_for
from tests.support.infra import SteadyLoad, check_commands_in_stream
from tests.support.projections import actual_from, expected_from
from tests.support.reports import report
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(180)]

RATE = 20.0  # commands per second
DOWN_FOR = 4.0  # seconds the database stays stopped
RECOVER_WITHIN = 15.0  # seconds from the restart to a query answered again
POLL_EVERY = 0.1


@dataclass
class Poll:
    """What the query poller saw: (monotonic time, route, HTTP status or error, code)."""

    seen: list[tuple[float, str, str, str]] = field(default_factory=list)

    def statuses(self, start: float, end: float) -> Counter[str]:
        return Counter(status for at, _, status, _ in self.seen if start <= at < end)

    def first_ok_after(self, instant: float) -> float | None:
        return min(
            (at for at, _, status, _ in self.seen if at > instant and status == "200"), default=None
        )

    def untyped(self) -> list[tuple[float, str, str, str]]:
        """Answers that are neither a success nor a typed, expected error."""
        return [
            s
            for s in self.seen
            if s[2] not in {"200", "503"} or (s[2] == "503" and s[3] != "query_unavailable")
        ]


async def poll_queries(
    http: httpx.AsyncClient, session_id: str, poll: Poll, stop: asyncio.Event
) -> None:
    routes = [f"/v1/checkout-sessions/{session_id}", "/v1/checkout-sessions?limit=5"]
    while not stop.is_set():
        for route in routes:
            try:
                response = await http.get(route)
            except httpx.HTTPError as exc:
                poll.seen.append((time.monotonic(), route, type(exc).__name__, ""))
                continue
            code = ""
            if response.status_code != 200:
                try:
                    code = str(response.json().get("code", ""))
                except ValueError:
                    code = f"not JSON: {response.text[:40]!r}"
            poll.seen.append((time.monotonic(), route, str(response.status_code), code))
        await asyncio.sleep(POLL_EVERY)  # the poller's pace: a query every POLL_EVERY s


async def test_postgres_stop_and_restart_under_load(nats_url, stream_names, private_postgres):
    dsn = private_postgres.create_database("faults")
    settings = settings_for(
        stream_names, http_port=0, api_auth="disabled", projector_claim_interval=0.2
    )
    endpoints = Endpoints(nats_url, dsn, embedded_nats=False, embedded_postgres=False)
    layout = settings.layout()
    source = EventSource(layout.events_stream, layout.events_prefix, layout.partitions)
    poll, stop_polling = Poll(), asyncio.Event()
    async with (
        SandboxFleet() as fleet,
        orchestrator(settings, nats_url, providers=fleet.providers),
        read_side(settings, endpoints) as read,
        httpx.AsyncClient(base_url=str(read.http_url), timeout=10) as http,
        await CheckoutClient.connect(nats_url, layout) as client,
    ):
        async with SteadyLoad(client, rate=RATE) as load:
            await load.wait_accepted(20)
            first = next(iter(load.ledger.accepted.values())).reply
            await _eventually_ok(http, f"/v1/checkout-sessions/{first.session_id}")
            poller = asyncio.create_task(poll_queries(http, first.session_id, poll, stop_polling))
            await wait_until(
                lambda: poll.statuses(0, float("inf")).get("200", 0) >= 10,
                what="10 queries answered before the outage",
            )
            accepted_at_stop = len(load.ledger.accepted)
            stopped_at = time.monotonic()
            await asyncio.to_thread(private_postgres.stop)
            stopped_in = time.monotonic() - stopped_at
            await asyncio.sleep(DOWN_FOR)  # the fault itself: the database down for DOWN_FOR s
            accepted_while_down = len(load.ledger.accepted) - accepted_at_stop
            await asyncio.to_thread(private_postgres.start)
            restarted_at = time.monotonic()
            await wait_until(
                lambda: poll.first_ok_after(restarted_at),
                RECOVER_WITHIN + 10,
                what="a query answered after the restart",
            )
            await load.wait_accepted(len(load.ledger.accepted) + 40, timeout=60)
        stop_polling.set()
        await poller
        last = max(load.ledger.accepted.values(), key=lambda a: a.reply.sequence).reply
        caught_up_in = await _caught_up(dsn, read.nc, source)
        ryw = await http.get(
            f"/v1/checkout-sessions/{last.session_id}", params={"min_sequence": last.sequence}
        )
        messages = await read_all(read.nc, source)
        actual = await _read_models(dsn)
    expected = expected_from(messages)
    stream_check = check_commands_in_stream(load.ledger, messages)
    outage = (stopped_at, restarted_at)
    recovered = poll.first_ok_after(restarted_at)
    assert recovered is not None
    report(
        "PostgreSQL stopped (pg_ctl stop -m fast) and restarted under command load",
        injected=f"stop after {accepted_at_stop} accepted commands (took {stopped_in:.2f} s); "
        f"down {restarted_at - stopped_at:.2f} s; started again on the same data",
        commands_accepted=len(load.ledger.accepted),
        commands_accepted_while_postgres_was_down=accepted_while_down,
        queries_before_outage=dict(poll.statuses(0, stopped_at)),
        queries_during_outage=dict(poll.statuses(*outage)),
        queries_after_restart=dict(poll.statuses(restarted_at, float("inf"))),
        first_query_answered_after_restart_s=recovered - restarted_at,
        projector_caught_up_after_load_s=caught_up_in,
        read_your_writes_after_restart=ryw.status_code,
        events_in_stream=len(messages),
        sessions_in_read_model=len(actual.sessions),
    )
    assert poll.untyped() == []
    assert poll.statuses(*outage).get("503", 0) > 0, "the poller never saw the outage"
    assert recovered - restarted_at < RECOVER_WITHIN
    assert accepted_while_down > 0
    assert not load.ledger.rejected
    assert stream_check.problems == []
    assert ryw.status_code == 200, ryw.text
    assert actual.timeline == expected.timeline
    assert actual.sessions == expected.sessions
    assert actual.totals == expected.totals
    assert actual.routing == expected.routing


async def _eventually_ok(http: httpx.AsyncClient, route: str, timeout: float = 15.0) -> None:
    async def ok() -> bool:
        return (await http.get(route)).status_code == 200

    await wait_until(ok, timeout, what=f"200 from {route}")


async def _read_models(dsn):
    conn = await asyncpg.connect(dsn, timeout=5)  # not the pool: see _caught_up
    try:
        return await actual_from(conn)
    finally:
        await conn.close(timeout=5)


async def _caught_up(dsn, nc, source, timeout: float = 60.0) -> float:
    """Seconds until the projector caught up, asked on a fresh connection each time: a
    pooled one may be left mid-operation by the outage (asyncpg: "another operation is in
    progress"), and would then answer nothing but that for the rest of the test."""
    started = time.monotonic()

    async def caught_up_now() -> bool:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return await caught_up(conn, nc, source)
        finally:
            await conn.close(timeout=5)

    await wait_until(
        caught_up_now,
        timeout,
        what="the projector to catch up",
        interval=0.1,
        # not yet, or the server still restarting
        ignoring=(TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError),
    )
    return time.monotonic() - started
