"""Helpers of the application-level fault cases (racing commands, webhooks, providers).

`running_stack` starts what the end-to-end tests start (tests/e2e/test_checkout_flow.py):
the four provider simulators, the orchestrator (command service), the read side
(projector) and the gateway (HTTP commands, webhook ingress and its inbox worker), on the
suite's NATS and Postgres, with stream names and a database of the test's own.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from events.envelope import RecordedEvent
from events.values import Provider
from orchestrator.bootstrap import Endpoints, Gateway, gateway, orchestrator, read_side
from orchestrator.client import CheckoutClient, CommandPending, CommandRejected
from orchestrator.jetstream.event_store import EventStore
from orchestrator.jetstream.streams import StreamLayout
from orchestrator.providers.base import PaymentProvider
from orchestrator.sandbox.fleet import SandboxFleet
from orchestrator.settings import Settings
from tests.integration.test_commands import settings_for

T = TypeVar("T")

TERMINAL_TYPES = frozenset({"completed", "expired", "canceled", "failed"})
TERMINAL_STATUSES = frozenset({"complete", "expired", "canceled", "failed"})


@dataclass(frozen=True, slots=True)
class Stack:
    fleet: SandboxFleet
    gateway: Gateway
    http: httpx.AsyncClient
    store: EventStore
    settings: Settings
    nats_url: str
    database_url: str

    async def history(self, session_id: str) -> tuple[RecordedEvent, ...]:
        return (await self.store.load(session_id)).events

    async def inbox_rows(self) -> list[dict[str, Any]]:
        async with self.gateway.processor._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT provider, event_id, status, outcome, session_id, attempts"
                " FROM webhook_inbox ORDER BY id"
            )
        return [dict(r) for r in rows]


@asynccontextmanager
async def running_stack(
    nats_url: str,
    database_url: str,
    names: object,
    *,
    adjust_providers: Callable[[SandboxFleet], Mapping[Provider, PaymentProvider]] | None = None,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    """The whole system, as `up --sandbox` runs it; ``overrides`` are `Settings` fields."""
    settings = settings_for(
        names,
        api_auth="disabled",
        http_port=0,
        **{"settlement_interval_seconds": 60.0, "webhook_worker_interval_seconds": 0.2} | overrides,
    )
    endpoints = Endpoints(nats_url, database_url, embedded_nats=False, embedded_postgres=False)
    async with SandboxFleet() as fleet:
        providers = adjust_providers(fleet) if adjust_providers else fleet.providers
        async with (
            orchestrator(settings, nats_url, providers=providers) as core,
            read_side(settings, endpoints, serve_http=False) as read,
            gateway(settings, endpoints, read, providers) as gw,
            httpx.AsyncClient(base_url=gw.http_url, timeout=30) as http,
        ):
            fleet.point_webhooks_at(gw.http_url)
            yield Stack(fleet, gw, http, core.store, settings, nats_url, database_url)


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.05)


def terminal_events(events: Iterable[RecordedEvent]) -> list[str]:
    return [r.event.type for r in events if r.event.type in TERMINAL_TYPES]


async def inbox_idle(stack: Stack) -> dict[str, int] | None:
    """Inbox counts once nothing is pending any more (None while something is)."""
    counts = await stack.gateway.inbox.counts()
    return None if counts.get("pending") else counts or {"empty": 0}


class Clock:
    """Seconds since the case started, for timelines."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self._t0


def report(title: str, lines: Iterable[str]) -> None:
    """The case's report on stdout: `pytest -s` shows it, `-rA` keeps it in the summary."""
    print(f"\n=== fault report: {title} ===")  # noqa: T201 - the report is the point
    for line in lines:
        print(f"  {line}")  # noqa: T201


# --- racing workers: separate OS processes sending commands and driving providers ------------
# A worker is `python -m tests.faults.app_support PLAN.json`: it connects, prints "ready",
# waits for a line on stdin (the start signal, so every process fires at once), sends every
# command of its plan concurrently, and prints one JSON line: an outcome per command.

TYPED_REJECTIONS = frozenset(
    {"payment_completed", "illegal_transition", "concurrency_conflict", "session_not_found"}
)


RESENDS = 5  # a command answered "queued" is sent again with the same id, as documented


async def _nats_command(client: CheckoutClient, command: dict[str, Any]) -> tuple[str, int]:
    """Outcome and how many times it was sent again after `CommandPending`."""
    kind, sid = command["kind"], command["session_id"]
    payload = {"session_id": sid, "reason": "merchant" if kind == "expire" else "racing"}
    command_id = f"race-{uuid.uuid4().hex}"
    for resends in range(RESENDS + 1):
        try:
            reply = await client.send(kind, payload, command_id=command_id)
        except CommandRejected as rejected:
            return f"rejected:{rejected.code}", resends
        except CommandPending:
            continue
        return ("applied" if reply.appended else "no-op"), resends
    return "pending", RESENDS


async def _http_command(http: httpx.AsyncClient, command: dict[str, Any]) -> tuple[str, int]:
    kind, sid = command["kind"], command["session_id"]
    if kind == "http_expire":
        url = f"{command['gateway']}/v1/checkout-sessions/{sid}/expire"
        headers = {"Idempotency-Key": f"race-{uuid.uuid4().hex}"}
        for resends in range(RESENDS + 1):
            response = await http.post(url, headers=headers)
            if response.status_code == 202:  # queued: send again with the same key
                continue
            if response.status_code == 200:
                return ("applied" if response.json().get("appended") else "no-op"), resends
            code = response.json().get("code")
            typed = response.status_code < 500 or code != "internal_error"
            outcome = f"rejected:{code}" if typed else f"untyped:http_{response.status_code}"
            return outcome, resends
        return "pending", RESENDS
    drive = "pay" if kind == "provider_pay" else "expire"
    response = await http.post(f"{command['sim']}/_sim/sessions/{command['psid']}/{drive}")
    if response.status_code == 200:
        return "driven", 0
    if response.status_code == 409:
        return "provider:not_open", 0
    return f"untyped:sim_{response.status_code}", 0


async def _run_worker(plan: dict[str, Any]) -> list[dict[str, Any]]:

    layout = StreamLayout(**plan["layout"])
    async with (
        await CheckoutClient.connect(plan["nats_url"], layout) as client,
        httpx.AsyncClient(timeout=30) as http,
    ):
        await http.get(f"{plan['gateway']}/healthz")  # connections warm before the start
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        gate = asyncio.Semaphore(plan.get("concurrency", 64))

        async def one(command: dict[str, Any]) -> dict[str, Any]:
            async with gate:
                started = time.monotonic()
                resends = 0
                try:
                    if command["kind"] in {"expire", "cancel"}:
                        outcome, resends = await _nats_command(client, command)
                    else:
                        outcome, resends = await _http_command(http, command)
                except Exception as exc:  # counted as untyped: the point of the case
                    outcome = f"untyped:{type(exc).__name__}"
                return {
                    "kind": command["kind"],
                    "session_id": command["session_id"],
                    "outcome": outcome,
                    "resends": resends,
                    "seconds": time.monotonic() - started,
                }

        return list(await asyncio.gather(*(one(c) for c in plan["commands"])))


def worker_main(path: str) -> None:
    import sys

    plan = json.loads(Path(path).read_text())
    results = asyncio.run(_run_worker(plan))
    sys.stdout.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    worker_main(sys.argv[1])
