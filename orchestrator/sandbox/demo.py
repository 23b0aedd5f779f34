"""``checkout-orchestrator demo``: the whole system on a fresh machine, in well under a minute.

It starts everything (embedded nats-server and PostgreSQL in a temporary directory
unless NATS_URL / DATABASE_URL are set, the four provider simulators, command handlers,
projectors, the HTTP API, the webhook worker), opens about a hundred checkout sessions
across USD, EUR, GBP, JPY and XOF and several regions, with a Stripe outage in the
middle, then pays some, fails some and expires some through the simulators' own signed
webhooks. It shows what happened from the read models and the trace of one checkout,
and stops everything it started.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from events.values import Provider
from orchestrator.bootstrap import gateway, orchestrator, privacy, read_side, servers
from orchestrator.http.api_keys import ApiKeys, Scope
from orchestrator.sandbox.fleet import SandboxFleet
from orchestrator.sandbox.simulator import DriveRequest
from orchestrator.settings import Settings
from orchestrator.telemetry import build_telemetry, instrumented

__all__ = ["DemoReport", "run_demo"]

_MARKETS: tuple[tuple[str, str, int, dict[str, str]], ...] = (
    # currency, country, amount (minor units), metadata
    ("USD", "US", 4_900, {}),
    ("EUR", "DE", 2_500, {}),
    ("EUR", "FR", 12_000, {}),
    ("GBP", "GB", 4_997, {}),
    ("JPY", "JP", 3_200, {}),
    ("XOF", "SN", 5_000, {}),
    ("XOF", "CI", 25_000, {}),
    ("USD", "US", 1_500, {"product_type": "digital"}),
    ("EUR", "NL", 900, {"product_type": "digital"}),
)


@dataclass(frozen=True, slots=True)
class Opened:
    session_id: str
    provider: Provider
    provider_session_id: str
    sequence: int


@dataclass(frozen=True, slots=True)
class DemoReport:
    opened: int
    rejected: int
    outcomes: dict[str, int]
    statuses: dict[str, int]
    seconds: float


@contextmanager
def _demo_settings(base: Settings) -> Iterator[Settings]:
    """The user's settings, with a throw-away data directory and any free HTTP port."""
    with tempfile.TemporaryDirectory(prefix="checkout-demo-") as data_dir:
        yield base.model_copy(
            update={"data_dir": Path(data_dir), "http_port": 0, "embedded_nats_port": 0,
                    "embedded_postgres_port": 0, "settlement_interval_seconds": 0.5}
        )  # fmt: skip


def _body(rng: random.Random, index: int) -> dict[str, Any]:
    currency, country, amount, metadata = _MARKETS[index % len(_MARKETS)]
    return {
        "currency": currency,
        "amount": amount + rng.randrange(0, 10) * (100 if currency not in {"JPY", "XOF"} else 1),
        "customer": {"email": f"buyer{index}@example.test", "country": country},
        "urls": {"success_url": "https://shop.example/ok", "cancel_url": "https://shop.example/no"},
        "metadata": {"order": f"A-{1000 + index}", **metadata},
    }


async def _open_sessions(
    http: httpx.AsyncClient, fleet: SandboxFleet, count: int, rng: random.Random
) -> tuple[list[Opened], int]:
    opened: list[Opened] = []
    rejected = 0
    limit = asyncio.Semaphore(8)

    async def one(index: int) -> None:
        nonlocal rejected
        async with limit:
            response = await http.post("/v1/checkout-sessions", json=_body(rng, index))
        body = response.json()
        if response.status_code != 201:
            rejected += 1
            return
        opened.append(
            Opened(
                body["session_id"],
                Provider(body["provider"]),
                body["provider_session_id"],
                body["sequence"],
            )
        )

    await asyncio.gather(*(one(i) for i in range(count // 2)))
    # An outage, not a blip: every Stripe call fails until it ends, so each one outlasts the
    # SDK's own retries and the router's fallback (then the open circuit) is what shows.
    fleet.stripe.faults.set(error_rate=1.0, error_status=503)
    await asyncio.gather(*(one(i) for i in range(count // 2, count)))
    fleet.stripe.faults.reset()
    return opened, rejected


async def _drive(
    http: httpx.AsyncClient, fleet: SandboxFleet, opened: list[Opened], rng: random.Random
) -> dict[str, str]:
    """Pay most, fail some (delayed Stripe payments that bounce), expire some."""
    wanted: dict[str, str] = {}
    for session in opened:
        simulator = fleet.simulators[session.provider]
        roll = rng.random()
        if roll < 0.6:
            await simulator.pay(session.provider_session_id)
            wanted[session.session_id] = "complete"
        elif roll < 0.72 and session.provider is Provider.STRIPE:
            await simulator.fail(session.provider_session_id, DriveRequest(delayed=True))
            wanted[session.session_id] = "failed"
        elif roll < 0.87:
            if session.provider in (Provider.STRIPE, Provider.POLAR):
                await simulator.expire(session.provider_session_id)  # the provider's webhook
            else:
                await http.post(f"/v1/checkout-sessions/{session.session_id}/expire")
            wanted[session.session_id] = "expired"
        else:
            wanted[session.session_id] = "open"
    return wanted


async def _settled(http: httpx.AsyncClient, wanted: dict[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(wanted)
    while pending and time.monotonic() < deadline:
        for session_id, status in list(pending.items()):
            response = await http.get(f"/v1/checkout-sessions/{session_id}")
            if response.status_code == 200 and response.json()["status"] == status:
                del pending[session_id]
        if pending:
            await asyncio.sleep(0.2)


async def _sessions(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/v1/checkout-sessions", params=params)).json()
        rows += page["data"]
        cursor = page.get("next_cursor")
        if not cursor:
            return rows


def _routing_table(decisions: list[dict[str, Any]]) -> Table:
    table = Table(title="routing decisions (matched rule -> provider, and why others were not)")
    for column in ("kind", "matched rule", "provider", "sessions", "dropped / failed (example)"):
        table.add_column(column)
    grouped: Counter[tuple[str, str, str]] = Counter()
    reasons: dict[tuple[str, str, str], str] = {}
    for decision in decisions:
        key = (decision["kind"], decision["matched_rule"] or "-", decision["provider"])
        grouped[key] += 1
        dropped = "; ".join(f"{d['provider']}: {d['reason']}" for d in decision["dropped"])
        reasons.setdefault(key, dropped)
    for (kind, rule, provider), count in sorted(grouped.items()):
        table.add_row(kind, rule, provider, str(count), reasons[(kind, rule, provider)] or "-")
    return table


def _sessions_table(rows: list[dict[str, Any]], limit: int = 15) -> Table:
    table = Table(title=f"checkout sessions ({len(rows)}, newest {limit})")
    for column in ("session", "currency", "amount", "country", "provider", "status", "payment"):
        table.add_column(column)
    for row in rows[:limit]:
        table.add_row(
            row["id"][-12:], row["currency"], str(row["amount"]), row["customer_country"] or "",
            row["provider"] or "-", row["status"], row["payment_status"] or "-",
        )  # fmt: skip
    return table


def _totals_table(stats: dict[str, Any]) -> Table:
    table = Table(title="totals per provider and currency (amounts in minor units)")
    for column in ("provider", "currency", "status", "sessions", "amount"):
        table.add_column(column)
    for total in sorted(
        stats["data"], key=lambda t: (t["provider"] or "", t["currency"], t["status"])
    ):
        table.add_row(
            total["provider"] or "-", total["currency"], total["status"],
            str(total["sessions"]), f"{total['amount']:,}",
        )  # fmt: skip
    return table


def _trace_tree(spans: list[ReadableSpan], trace_id: int, title: str) -> Tree:
    mine = sorted(
        (s for s in spans if s.context is not None and s.context.trace_id == trace_id),
        key=lambda s: s.start_time or 0,
    )
    children: dict[int | None, list[ReadableSpan]] = {}
    ids = {s.context.span_id for s in mine if s.context is not None}
    for span in mine:
        parent = span.parent.span_id if span.parent and span.parent.span_id in ids else None
        children.setdefault(parent, []).append(span)
    tree = Tree(f"[bold]{title}[/bold] trace {trace_id:032x}")

    def add(node: Tree, parent: int | None) -> None:
        for span in children.get(parent, []):
            millis = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            branch = node.add(f"{span.name}  [dim]{millis:.1f} ms[/dim]")
            if span.context is not None:
                add(branch, span.context.span_id)

    add(tree, None)
    return tree


async def _show(
    console: Console, http: httpx.AsyncClient, exporter: InMemorySpanExporter, opened: list[Opened]
) -> dict[str, int]:
    decisions: list[dict[str, Any]] = []
    for session in opened:
        response = await http.get(f"/v1/checkout-sessions/{session.session_id}/routing-decisions")
        decisions += response.json()
    console.print(_routing_table(decisions))
    rows = await _sessions(http)
    console.print(_sessions_table(rows))
    today = datetime.now(UTC).date().isoformat()
    stats = await http.get("/v1/stats/providers", params={"from": today, "to": today})
    console.print(_totals_table(stats.json()))
    sample = opened[0]
    events = (await http.get(f"/v1/checkout-sessions/{sample.session_id}/events")).json()
    if events and events[0]["trace_id"]:
        spans = list(exporter.get_finished_spans())
        console.print(_trace_tree(spans, int(events[0]["trace_id"], 16), sample.session_id))
    return dict(Counter(row["status"] for row in rows))


async def _run(settings: Settings, console: Console, count: int, seed: int) -> DemoReport:
    started = time.monotonic()
    rng = random.Random(seed)  # noqa: S311 - a demo's dice, not cryptography
    exporter = InMemorySpanExporter()
    telemetry = build_telemetry(
        service_name=settings.otel_service_name,
        otlp_endpoint=settings.otel_exporter_otlp_endpoint,
        span_exporters=[exporter],
    )
    with servers(settings) as endpoints, instrumented(telemetry):
        async with AsyncExitStack() as stack:
            stack.callback(telemetry.shutdown)
            fleet = await stack.enter_async_context(SandboxFleet())
            providers = fleet.providers
            personal = await stack.enter_async_context(privacy(settings, endpoints))
            await stack.enter_async_context(
                orchestrator(
                    settings,
                    endpoints.nats_url,
                    providers=providers,
                    telemetry=telemetry,
                    personal=personal,
                )
            )
            read = await stack.enter_async_context(
                read_side(
                    settings, endpoints, serve_http=False, telemetry=telemetry, personal=personal
                )
            )
            gw = await stack.enter_async_context(
                gateway(settings, endpoints, read, providers, telemetry=telemetry)
            )
            fleet.point_webhooks_at(gw.http_url)
            headers = {}
            if settings.api_auth == "required":  # the demo is a client like any other
                key = await ApiKeys(read.pool).create(Scope.WRITE, "demo")
                headers["authorization"] = f"Bearer {key.plaintext}"
            http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=gw.http_url, timeout=20, headers=headers)
            )
            console.print(f"[green]running[/green]: HTTP {gw.http_url}, NATS {endpoints.nats_url}")
            opened, rejected = await _open_sessions(http, fleet, count, rng)
            console.print(f"opened {len(opened)} checkout sessions ({rejected} rejected)")
            wanted = await _drive(http, fleet, opened, rng)
            await _settled(http, wanted, timeout=30)
            statuses = await _show(console, http, exporter, opened)
    return DemoReport(
        opened=len(opened),
        rejected=rejected,
        outcomes=dict(Counter(wanted.values())),
        statuses=statuses,
        seconds=time.monotonic() - started,
    )


def run_demo(base: Settings, console: Console, *, count: int = 100, seed: int = 7) -> DemoReport:
    with _demo_settings(base) as settings:
        return asyncio.run(_run(settings, console, count, seed))
