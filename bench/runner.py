"""`python -m bench run`: every scenario next to its raw baseline and the peer.

Runs on the embedded servers in a temporary directory (or on NATS_URL / DATABASE_URL);
each scenario gets a scratch stream and a scratch database, so runs never mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from bench import append, commands, growth, projection
from bench.measure import Lag, load_sessions, measure_catch_up, measure_lag
from bench.processes import CpuClock, cli_process, otlp_sink
from bench.report import Report, Row, Target
from bench.scratch import Scratch, scratch
from orchestrator.bootstrap import Endpoints, connect_nats, projector_settings, servers
from orchestrator.embedded.cluster import EmbeddedNatsCluster
from orchestrator.jetstream.connection import nats_options
from orchestrator.jetstream.event_store import EventStore
from orchestrator.settings import Settings
from projections import rebuild

__all__ = ["SCENARIOS", "BenchOptions", "run_bench"]


@dataclass(frozen=True, slots=True)
class BenchOptions:
    sessions: int = 5_000  # append and catch-up workloads
    commands: int = 5_000  # command-path throughput
    seconds: float = 8.0  # each steady-rate measurement
    lag_rates: tuple[int, ...] = (1_000, 2_000, 5_000)
    concurrency: int = 256
    peer: bool = True
    sync_interval: str | None = None  # None: the server's default (fsync every 2 min)
    only: tuple[str, ...] = ()
    growth_sizes: tuple[int, ...] = (10_000, 1_000_000)
    rebuild_sizes: tuple[int, ...] = (10_000, 30_000, 100_000)
    plot: Path | None = None
    profile: Path | None = None  # py-spy flame graphs of the role processes


@dataclass(frozen=True, slots=True)
class Run:
    """What every scenario works with: the servers, the options, the report to fill."""

    settings: Settings
    endpoints: Endpoints
    options: BenchOptions
    report: Report


Step = Callable[[Run], Awaitable[None]]


async def _append(run: Run) -> None:
    settings, endpoints, options, report = run.settings, run.endpoints, run.options, run.report
    shapes: tuple[tuple[append.Shape, str], ...] = (
        ("chain", "3 single appends, each expecting the previous sequence"),
        ("batch", "one ADR-50 atomic batch per session (a create)"),
    )
    for shape, note in shapes:
        # the server commits atomic batches about a hundred times slower: fewer, less in flight
        count = options.sessions if shape == "chain" else max(200, options.sessions // 10)
        concurrency = options.concurrency if shape == "chain" else 32
        async with scratch(settings, endpoints) as s:
            sessions = append.sessions_of_three(count, tag="o")
            store = EventStore(s.nc, s.layout)
            ours = await append.ours(store, sessions, shape=shape, concurrency=concurrency)
            await store.close()
        async with scratch(settings, endpoints) as s:
            sessions = append.sessions_of_three(count, tag="r")
            raw = await append.raw(s.nc, s.layout, sessions, shape=shape, concurrency=concurrency)
        report.add(
            Row(
                f"append, sessions of 3 events ({shape})",
                "events/s",
                ours.per_second,
                raw=raw.per_second,
                target=Target(of_raw=0.8),
                note=note,
            )
        )
    async with scratch(settings, endpoints) as s:
        sessions = append.sessions_of_three(max(200, options.sessions // 10), tag="m")
        memory = await append.raw_in_memory(s.nc, s.layout, sessions, concurrency=32)
    report.add(
        Row(
            "  the same raw batches on a memory-storage stream",
            "events/s",
            memory.per_second,
            note="for scale only: nats-server stages each R1 file-storage batch in a new "
            "on-disk store (docs/performance.md)",
        )
    )


async def _peer(
    options: BenchOptions, settings: Settings, endpoints: Endpoints
) -> dict[str, float]:
    """The same session workload through the `eventsourcing` library: write, then project."""
    if not options.peer:
        return {}
    from bench import peer  # noqa: PLC0415 - the peer is an optional extra

    sessions = max(500, options.sessions // 5)
    async with scratch(settings, endpoints) as s:
        written = await asyncio.to_thread(peer.write_sessions, s.dsn, sessions)
        projected = await asyncio.to_thread(
            peer.project_sessions, s.dsn, expected_events=written.events
        )
    return {"write": written.events_per_second, "projection": projected.events_per_second}


@dataclass(frozen=True, slots=True)
class Drive:
    """One command worker driven by the load generator: throughput, latency, CPU."""

    throughput: float
    latency: commands.Latency
    cpu_us: float  # CPU of the worker's processes per command, in the throughput run
    cpu_us_at_rate: float  # the same in the fixed-rate run
    rejected: int
    more: dict[int, tuple[commands.Latency, float]]  # latency and CPU at further rates


async def _commands(run: Run) -> None:
    settings, endpoints, options, report = run.settings, run.endpoints, run.options, run.report
    async with scratch(settings, endpoints) as s:
        ours = await _drive_commands(s, options, ["up", "--role", "commands"])
    async with scratch(settings, endpoints) as s:
        raw = await _drive_commands(s, options, ["bench", "raw-worker"])
    report.add(
        Row(
            "command path: create, no provider (1 event)",
            "commands/s",
            ours.throughput,
            raw=raw.throughput,
            target=Target(of_raw=0.7),
            note=f"{options.concurrency} in flight; orchestrator in its own process",
        )
    )
    _cpu_row(report, "  CPU per command, in that run", ours, raw)
    cores = os.cpu_count() or 1
    if cores > 1:
        async with scratch(settings, endpoints) as s:
            many = await _drive_commands(
                s, options, ["up", "--role", "commands", "--workers", str(cores)]
            )
        report.add(
            Row(
                f"  the same with {cores} command workers (up --workers {cores})",
                "commands/s",
                many.throughput,
                raw=raw.throughput,
                note=f"vs 1 worker: {many.throughput / ours.throughput:.2f}x; "
                f"{many.cpu_us:,.0f} µs CPU per command; p99 {many.latency.p99_ms:,.1f} ms "
                f"at {many.latency.achieved:,.0f}/s",
            )
        )
    for label, mine, theirs in (
        ("p50", ours.latency.p50_ms, raw.latency.p50_ms),
        ("p99", ours.latency.p99_ms, raw.latency.p99_ms),
    ):
        report.add(
            Row(
                f"command path latency {label} at {ours.latency.rate:,}/s",
                "ms",
                mine,
                raw=theirs,
                better="lower",
                target=Target(absolute=15, of_raw=3) if label == "p99" else None,
                note=f"achieved {ours.latency.achieved:,.0f}/s (raw {raw.latency.achieved:,.0f}/s)",
            )
        )
    async with scratch(settings, endpoints) as s, _stripe(0.0) as stripe:
        via = await _drive_commands(
            s,
            replace(options, commands=max(300, options.commands // 5)),
            ["up", "--role", "commands"],
            stripe,
            with_provider=True,
        )
    report.add(
        Row(
            "command path: create via the Stripe simulator",
            "commands/s",
            via.throughput,
            note="route + Stripe SDK call at 0 ms + 3-event atomic batch; single node, R1",
        )
    )
    report.add(
        Row(
            f"  its latency p99 at {via.latency.rate:,}/s",
            "ms",
            via.latency.p99_ms,
            better="lower",
            note=f"p50 {via.latency.p50_ms:.1f} ms, achieved {via.latency.achieved:,.0f}/s",
        )
    )


def _cpu_row(report: Report, scenario: str, ours: Drive, raw: Drive | None = None) -> None:
    report.add(
        Row(
            scenario,
            "µs CPU",
            ours.cpu_us,
            raw=raw.cpu_us if raw else None,
            better="lower",
            note="user + system time of the worker process(es) / commands handled",
        )
    )


@contextlib.asynccontextmanager
async def _stripe(latency: float) -> AsyncIterator[dict[str, str]]:
    """The Stripe simulator in its own process; the settings that point `up` at it."""
    async with cli_process(
        ["bench", "stripe-sim", "--latency", str(latency)], {}, ready="stripe simulator up"
    ) as sim:
        url, key, secret = sim.ready_line.split()[-3:]
        yield {"STRIPE_API_KEY": key, "STRIPE_WEBHOOK_SECRET": secret, "STRIPE_API_BASE": url}


async def _drive_commands(
    s: Scratch,
    options: BenchOptions,
    worker: list[str],
    environment: dict[str, str] | None = None,
    *,
    with_provider: bool = False,
    rate: int | None = None,
    concurrency: int | None = None,
    more_rates: tuple[int, ...] = (),
) -> Drive:
    async with cli_process(
        worker, {**s.environment(), **(environment or {})}, ready="up", profile=options.profile
    ) as child:
        sender = commands.Sender(s.nc, s.layout, with_provider=with_provider)
        await sender.start()
        await sender.throughput(200, 16)  # warm-up: connections, consumers, caches
        cpu = CpuClock((child.pid,))
        async with cpu.timing():
            throughput = await sender.throughput(
                options.commands, concurrency or options.concurrency
            )
        if rate is None:
            # the fixed rate; a path that cannot sustain it is held at half its
            # throughput (beyond its capacity an open-loop load measures only the queue)
            rate = 1_000 if not with_provider else min(1_000, max(10, int(throughput / 2)))
        steady = CpuClock((child.pid,))
        async with steady.timing():
            latency = await sender.latency(rate, options.seconds)
        more: dict[int, tuple[commands.Latency, float]] = {}
        for other in more_rates:
            clock = CpuClock((child.pid,))
            async with clock.timing():
                measured = await sender.latency(other, options.seconds)
            more[other] = (measured, clock.per(measured.commands))
    return Drive(
        throughput, latency, cpu.per(options.commands), steady.per(latency.commands),
        sender.rejected, more,
    )  # fmt: skip


async def _production(run: Run) -> None:
    """Creates on the shape deploy/ runs: three nats-servers routed on loopback, R3 streams,
    ``sync_interval: always``; beside raw atomic batches on the same cluster; then the
    create with the Stripe simulator at a provider's latency (300 ms)."""
    options, report = run.options, run.report
    with (
        tempfile.TemporaryDirectory(prefix="checkout-bench-cluster-") as directory,
        EmbeddedNatsCluster(directory, size=3, sync_interval="always") as cluster,
    ):
        endpoints = replace(run.endpoints, nats_url=cluster.url, embedded_nats=True)
        count = max(200, options.sessions // 10)
        async with scratch(run.settings, endpoints, replicas=3) as s:
            store = EventStore(s.nc, s.layout)
            ours = await append.ours(
                store, append.sessions_of_three(count, tag="o"), shape="batch", concurrency=32
            )
            await store.close()
        async with scratch(run.settings, endpoints, replicas=3) as s:
            raw = await append.raw(
                s.nc, s.layout, append.sessions_of_three(count, tag="r"), shape="batch",
                concurrency=32,
            )  # fmt: skip
        report.add(
            Row(
                "cluster R3, sync always: append, sessions of 3 events (batch)",
                "events/s",
                ours.per_second,
                raw=raw.per_second,
                target=Target(of_raw=0.8),
                note="3 nats-servers on loopback (deploy/'s shape); one atomic batch per session",
            )
        )
        creates = replace(options, commands=max(300, options.commands // 5))
        async with scratch(run.settings, endpoints, replicas=3) as s, _stripe(0.0) as stripe:
            zero = await _drive_commands(
                s, creates, ["up", "--role", "commands"], stripe, with_provider=True
            )
        report.add(
            Row(
                "cluster R3: create via the Stripe simulator at 0 ms",
                "creates/s",
                zero.throughput,
                raw=raw.per_second / 3,
                note=f"{options.concurrency} in flight; raw = raw atomic 3-event batches/s on "
                f"the same cluster; p50 {zero.latency.p50_ms:.1f} / p99 "
                f"{zero.latency.p99_ms:.1f} ms at {zero.latency.achieved:,.0f}/s",
            )
        )
        _cpu_row(report, "  CPU per create, in that run", zero)
        report.conditions["cluster"] = "3 nodes, R3, sync_interval=always"
        await _at_provider_latency(run, endpoints, creates, latency=0.3, rate=200)


async def _at_provider_latency(
    run: Run, endpoints: Endpoints, options: BenchOptions, *, latency: float, rate: int
) -> None:
    """Creates with the provider answering after ``latency``: the in-flight limit, and
    the orchestrator's own share (end to end minus the provider's ``latency``)."""
    report, ms = run.report, latency * 1000
    async with scratch(run.settings, endpoints, replicas=3) as s, _stripe(latency) as stripe:
        slow = await _drive_commands(
            s, options, ["up", "--role", "commands"], stripe, with_provider=True, rate=rate,
            concurrency=max(options.concurrency, 512), more_rates=(50,),
        )  # fmt: skip
    report.add(
        Row(
            f"cluster R3: create at {ms:.0f} ms provider latency, 512 in flight",
            "creates/s",
            slow.throughput,
            note=f"at most the worker's in-flight limit / {ms:.0f} ms "
            f"(CHECKOUT_COMMANDS_IN_FLIGHT); {slow.cpu_us:,.0f} µs CPU per create",
        )
    )
    for at, (measured, cpu_us) in sorted(
        {rate: (slow.latency, slow.cpu_us_at_rate), **slow.more}.items(), reverse=True
    ):
        for label, value in (("p50", measured.p50_ms), ("p99", measured.p99_ms)):
            report.add(
                Row(
                    f"  overhead {label} at {at}/s (end to end - {ms:.0f} ms of provider)",
                    "ms",
                    value - ms,
                    better="lower",
                    target=Target(absolute=10) if label == "p99" and at == rate else None,
                    note=f"achieved {measured.achieved:,.0f}/s; end to end {value:,.1f} ms; "
                    f"{measured.rejected} rejected so far",
                )
            )
        report.add(
            Row(
                f"  CPU per create at {at}/s",
                "µs CPU",
                cpu_us,
                better="lower",
                note="user + system time of the worker process(es) / creates issued",
            )
        )


async def _projection(run: Run) -> None:
    settings, endpoints, options, report = run.settings, run.endpoints, run.options, run.report
    config = projector_settings(settings, name="bench")
    async with scratch(settings, endpoints) as s:
        events = await load_sessions(s.append, options.sessions)
        # the projector runs in this process: freeze what the bench holds, as `up` freezes
        # what start-up leaves, so a collection does not walk the bench's objects
        gc.collect()
        gc.freeze()
        ours = await measure_catch_up(
            nc=s.nc, pool=s.pool, dsn=s.dsn, source=s.source, events=events, settings=config
        )
        raw = await projection.raw_catch_up(s.nc, s.dsn, s.source, events=events)
    figures = await _peer(options, settings, endpoints)
    report.add(
        Row(
            "projection catch-up, all read models, from empty",
            "events/s",
            ours.events_per_second,
            raw=raw.per_second,
            peer=figures.get("projection"),
            target=Target(of_raw=0.8, of_peer=10),  # issue 14's
            note=f"{events:,} events of {options.sessions:,} sessions",
        )
    )
    if "write" in figures:
        async with scratch(settings, endpoints) as s:
            sessions = append.sessions_of_three(max(500, options.sessions // 5), tag="p")
            store = EventStore(s.nc, s.layout)
            written = await append.ours(
                store, sessions, shape="chain", concurrency=options.concurrency
            )
            await store.close()
        report.add(
            Row(
                "write sessions of 3 events, vs eventsourcing",
                "events/s",
                written.per_second,
                peer=figures["write"],
                target=Target(of_peer=4),
                note="ours: chained OCC appends; peer: one aggregate save per session",
            )
        )


async def _lag(run: Run) -> None:
    report = run.report
    with otlp_sink() as sink:
        ours, ours_cpu = await _lags(
            run,
            ["up", "--role", "projectors"],
            {"CHECKOUT_PROJECTOR_NAME": "bench", "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint},
        )
        report.conditions["spans_exported_bytes"] = sink.bytes
    raw, raw_cpu = await _lags(run, ["bench", "raw-projector"], {})
    for rate, lag in ours.items():
        report.add(
            Row(
                f"projection lag p99 at {rate:,} events/s, tracing on",
                "ms",
                lag.p99_ms,
                raw=raw[rate].p99_ms,
                better="lower",
                target=Target(absolute=25, of_raw=2) if rate == 2_000 else None,
                note=f"p50 {lag.p50_ms:.1f} ms (raw {raw[rate].p50_ms:.1f}), "
                f"achieved {lag.achieved_rate:,.0f}/s (raw {raw[rate].achieved_rate:,.0f}/s)",
            )
        )
    # the same projector without tracing, at the target's rate: what the spans cost
    untraced, _ = await _lags(
        run, ["up", "--role", "projectors"], {"CHECKOUT_PROJECTOR_NAME": "bench"}, rates=(2_000,)
    )
    if 2_000 in untraced:
        lag = untraced[2_000]
        report.add(
            Row(
                "  the same at 2,000 events/s, tracing off",
                "ms",
                lag.p99_ms,
                raw=raw[2_000].p99_ms if 2_000 in raw else None,
                better="lower",
                note=f"p50 {lag.p50_ms:.1f} ms, achieved {lag.achieved_rate:,.0f}/s: what the "
                "spans cost is the difference",
            )
        )
    report.add(
        Row(
            "  CPU per event, projector in the lag runs (tracing on)",
            "µs CPU",
            ours_cpu,
            raw=raw_cpu,
            better="lower",
            note="user + system time of the follower process / events appended at all rates",
        )
    )


async def _lags(
    run: Run,
    follower: list[str],
    environment: dict[str, str],
    *,
    rates: tuple[int, ...] | None = None,
) -> tuple[dict[int, Lag], float]:
    """Lag at each rate (the run's lag rates, or ``rates`` of them), with ``follower`` (a
    projector) in its own process; and its CPU per event over all rates (µs)."""
    wanted = [r for r in run.options.lag_rates if rates is None or r in rates]
    lags: dict[int, Lag] = {}
    async with (
        scratch(run.settings, run.endpoints) as s,
        cli_process(
            follower, {**s.environment(), **environment}, ready="up", profile=run.options.profile
        ) as child,
    ):
        cpu = CpuClock((child.pid,))
        for rate in wanted:
            async with cpu.timing():
                lags[rate] = await measure_lag(
                    dsn=s.dsn,
                    source=s.source,
                    append=s.append,
                    rate=rate,
                    seconds=run.options.seconds,
                )
    return lags, cpu.per(sum(lag.events for lag in lags.values())) if lags else 0.0


async def _growth(run: Run) -> None:
    settings, endpoints, options, report = run.settings, run.endpoints, run.options, run.report
    curves = growth.Curves()
    async with scratch(settings, endpoints) as s:
        filler = growth.Filler(s.nc, s.layout)
        async with cli_process(
            ["up", "--role", "commands"], s.environment(), ready="up", profile=options.profile
        ) as role:
            sender = commands.Sender(s.nc, s.layout, with_provider=False)
            await sender.start()
            await sender.throughput(200, 16)
            memory = growth.Memory(role.pid)
            for size in options.growth_sizes:
                fill_rate = await filler.fill(max(0, size - filler.appended))
                p50, p99 = await sender.one_at_a_time(500)
                async with memory.sampling():
                    throughput = await sender.throughput(options.commands, options.concurrency)
                curves.commands.append(growth.CommandCost(filler.appended, p50, p99, throughput))
                report.conditions[f"fill_rate_to_{size}"] = round(fill_rate)
        curves.memory["commands"] = memory.peak_mib
    first, last = curves.commands[0], curves.commands[-1]
    report.add(
        Row(
            f"per-command p50 with {last.stream_events:,} vs {first.stream_events:,} events stored",
            "ms",
            last.p50_ms,
            raw=first.p50_ms,
            better="lower",
            note=f"ours = large stream, raw column = small stream; "
            f"throughput {last.throughput:,.0f} vs {first.throughput:,.0f} commands/s",
        )
    )
    async with scratch(settings, endpoints) as s:
        filler = growth.Filler(s.nc, s.layout)
        for size in options.rebuild_sizes:
            await filler.fill(max(0, size - filler.appended))
            result = await rebuild(
                "sessions", nc=s.nc, pool=s.pool, dsn=s.dsn, source=s.source,
                batch_size=settings.projector_batch_size,
            )  # fmt: skip
            curves.rebuilds.append((filler.appended, result.seconds))
    slope, _intercept, r2 = growth.linear_fit(*zip(*curves.rebuilds, strict=True))
    report.add(
        Row(
            f"rebuild 'sessions' at {curves.rebuilds[-1][0]:,} events",
            "s",
            curves.rebuilds[-1][1],
            better="lower",
            note=f"linear fit r² = {r2:.3f}, {slope * 1e6:.0f} s per million events",
        )
    )
    curves.memory |= await _memory_under_load(settings, endpoints, options)
    for name, mib in curves.memory.items():
        report.add(
            Row(f"memory of the {name} role under load (peak RSS)", "MiB", mib, better="lower")
        )
    if options.plot is not None:
        growth.plot(curves, options.plot)
        report.conditions["plot"] = str(options.plot)


async def _memory_under_load(
    settings: Settings, endpoints: Endpoints, options: BenchOptions
) -> dict[str, float]:
    """Peak RSS of the projectors role under a steady append load, and of the api role
    under a query load (the commands role is sampled during the growth runs)."""
    peaks: dict[str, float] = {}
    async with scratch(settings, endpoints) as s:
        environment = {**s.environment(), "CHECKOUT_PROJECTOR_NAME": "bench"}
        async with cli_process(
            ["up", "--role", "projectors"], environment, ready="up", profile=options.profile
        ) as role:
            memory = growth.Memory(role.pid)
            async with memory.sampling():
                await measure_lag(
                    dsn=s.dsn, source=s.source, append=s.append, rate=1_000,
                    seconds=options.seconds,
                )  # fmt: skip
            peaks["projectors"] = memory.peak_mib
        api = {**environment, "CHECKOUT_API_AUTH": "disabled", "CHECKOUT_HTTP_PORT": "0"}
        async with cli_process(
            ["up", "--role", "api"], api, ready="up", profile=options.profile
        ) as role:
            url = growth.http_url_in(role.ready_line)
            memory = growth.Memory(role.pid)
            async with memory.sampling():
                await growth.query_load(url, seconds=options.seconds)
            peaks["api"] = memory.peak_mib
    return peaks


SCENARIOS: dict[str, Step] = {
    "append": _append,
    "commands": _commands,
    "production": _production,
    "projection": _projection,
    "lag": _lag,
    "growth": _growth,
}


async def _server_version(settings: Settings, endpoints: Endpoints) -> str:
    nc = await connect_nats(endpoints.nats_url, "checkout-bench", nats_options(settings))
    try:
        version = nc.connected_server_version
        return f"{version.major}.{version.minor}.{version.patch}"
    finally:
        await nc.close()


async def _run(settings: Settings, options: BenchOptions, console: Console) -> Report:
    if options.profile is not None:
        options.profile.mkdir(parents=True, exist_ok=True)
    report = Report("python -m bench run")
    with servers(settings) as endpoints:
        report.conditions.update(
            {
                "nats_server": await _server_version(settings, endpoints),
                "storage": "file",
                "sync_interval": options.sync_interval or "server default (2m)",
                "nats": "embedded" if endpoints.embedded_nats else "NATS_URL",
                "postgres": "embedded" if endpoints.embedded_postgres else "DATABASE_URL",
                "concurrency": options.concurrency,
            }
        )
        report.conditions["machine_at_start"] = _machine_load()
        for name, step in SCENARIOS.items():
            if options.only and name not in options.only:
                continue
            console.print(f"[dim]running {name} ...[/dim]")
            await step(Run(settings, endpoints, options, report))
        report.conditions["machine_at_end"] = _machine_load()
    return report


def _machine_load() -> str:
    """Load averages and the CPU pressure (share of time tasks waited for a core) of the
    last 10 s / 60 s / 300 s: how much others used the machine while we measured."""
    load = "/".join(f"{value:.2f}" for value in os.getloadavg())
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0].split()[1:4]
    except (OSError, IndexError):
        return f"load {load}"
    return f"load {load}, cpu pressure {'/'.join(part.split('=')[1] for part in some)}%"


def run_bench(settings: Settings, options: BenchOptions, console: Console) -> Report:
    """Run the scenarios on embedded servers in a throwaway directory (unless configured)."""
    with tempfile.TemporaryDirectory(prefix="checkout-bench-") as directory:
        settings = settings.model_copy(
            update={
                "data_dir": Path(directory),
                "nats_sync_interval": options.sync_interval,
                "embedded_nats_port": 0,
                "embedded_postgres_port": 0,
            }
        )
        return asyncio.run(_run(settings, options, console))
