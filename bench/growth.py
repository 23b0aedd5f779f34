"""Growth: does a command cost the same with 10^4 and 10^6 events already stored, does a
rebuild grow linearly with the stream, and how much memory does each role take?

The stream is grown with realistic sessions published straight to JetStream (encoded
once from a few hundred lifecycles, then copied under fresh session ids), so that filling
a million events takes a minute and not the orchestrator's own time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from nats.aio.client import Client as NatsClient
from ulid import ULID

from bench.workload import lifecycle
from events.codec import EncodedEvent, Headers, encode
from events.envelope import EventMetadata
from events.subjects import event_subject
from orchestrator.jetstream.streams import StreamLayout

__all__ = ["CommandCost", "Curves", "Filler", "Memory", "linear_fit", "plot", "rss_mib"]

_START = datetime(2026, 1, 1, tzinfo=UTC)
_PLACEHOLDER = "cs_GROWTHTEMPLATE000000000000"
_TEMPLATES = 300


class Filler:
    """Appends whole sessions of other customers, as fast as the server takes them."""

    def __init__(self, nc: NatsClient, layout: StreamLayout) -> None:
        self._nc = nc
        self._layout = layout
        rng = random.Random(11)  # noqa: S311 - test data, not secrets
        metadata = EventMetadata(
            event_id="template",
            command_id="template",
            correlation_id="template",
            causation_id="template",
            occurred_at=_START,
        )
        self._templates: list[list[EncodedEvent]] = [
            [
                encode(e, metadata, prefix=layout.events_prefix, partitions=1, index=i)
                for i, e in enumerate(lifecycle(rng, _PLACEHOLDER, _START))
            ]
            for _ in range(_TEMPLATES)
        ]
        self.appended = 0

    def _session(self, index: int) -> list[EncodedEvent]:
        """A copy of a template session under a fresh id (and fresh envelope ids)."""
        sid = f"cs_{ULID()}"
        layout = self._layout
        copies = []
        for position, template in enumerate(self._templates[index % _TEMPLATES]):
            event_type = template.headers[Headers.EVENT_TYPE]
            headers = template.headers | {
                Headers.EVENT_ID: f"{sid}-{position}",
                Headers.COMMAND_ID: f"{sid}-{position}",
                Headers.MSG_ID: f"{sid}:{position}",
            }
            copies.append(
                EncodedEvent(
                    event_subject(layout.events_prefix, sid, event_type, layout.partitions),
                    template.payload.replace(_PLACEHOLDER.encode(), sid.encode()),
                    headers,
                )
            )
        return copies

    async def fill(self, events: int, *, in_flight: int = 512) -> float:
        """Append about ``events`` more events; returns events/s."""
        target = self.appended + events
        slots = asyncio.Semaphore(in_flight)
        started = time.perf_counter()
        pending: set[asyncio.Task[None]] = set()

        async def publish(message: EncodedEvent) -> None:
            try:
                await self._nc.request(
                    message.subject, message.payload, timeout=30, headers=message.headers
                )
            finally:
                slots.release()

        index = 0
        while self.appended < target:
            for message in self._session(index):
                await slots.acquire()
                task = asyncio.create_task(publish(message))
                pending.add(task)
                task.add_done_callback(pending.discard)
                self.appended += 1
            index += 1
        await asyncio.gather(*pending)
        return events / (time.perf_counter() - started)


# --- memory -------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Memory:
    """Peak RSS of a process, sampled while a load runs."""

    pid: int
    peak_mib: float = 0.0

    @contextlib.asynccontextmanager
    async def sampling(self, every: float = 0.1) -> AsyncIterator[None]:
        async def sample() -> None:
            while True:
                self.peak_mib = max(self.peak_mib, rss_mib(self.pid))
                await asyncio.sleep(every)

        task = asyncio.create_task(sample())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def http_url_in(line: str) -> str:
    """The query API's address in the line `up` prints when it is ready."""
    match = re.search(r"HTTP (http://\S+)", line)
    if match is None:
        raise RuntimeError(f"no HTTP address in {line!r}")
    return match.group(1)


async def query_load(url: str, *, seconds: float, concurrency: int = 16) -> int:
    """List and fetch sessions through the HTTP API for ``seconds``; returns requests made."""
    done = 0
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                page = (await http.get("/v1/checkout-sessions", params={"limit": 50})).json()
                for row in page.get("data", [])[:5]:
                    await http.get(f"/v1/checkout-sessions/{row['id']}/events")
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


# --- the curves and their plot ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandCost:
    stream_events: int
    p50_ms: float
    p99_ms: float
    throughput: float


@dataclass
class Curves:
    commands: list[CommandCost] = field(default_factory=list)
    rebuilds: list[tuple[int, float]] = field(default_factory=list)  # (events, seconds)
    memory: dict[str, float] = field(default_factory=dict)  # role -> peak RSS MiB


def plot(curves: Curves, path: Path) -> None:
    """Three panels: per-command latency vs stream size, rebuild time vs stream size,
    memory per role."""
    import matplotlib as mpl  # noqa: PLC0415 - an optional extra, loaded only to plot

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, (cost, rebuilt, memory) = plt.subplots(1, 3, figsize=(15, 4.2))
    sizes = [c.stream_events for c in curves.commands]
    cost.plot(sizes, [c.p50_ms for c in curves.commands], "o-", label="p50")
    cost.plot(sizes, [c.p99_ms for c in curves.commands], "s--", label="p99")
    cost.set_xscale("log")
    cost.set_ylim(bottom=0)
    cost.set_xlabel("events already in the stream")
    cost.set_ylabel("create command latency, ms (one at a time)")
    cost.set_title("per-command cost vs stream size")
    cost.legend()
    events, seconds = zip(*curves.rebuilds, strict=True) if curves.rebuilds else ((), ())
    rebuilt.plot(events, seconds, "o-")
    if len(events) > 1:
        slope, intercept, r2 = linear_fit(events, seconds)
        rebuilt.plot(events, [slope * x + intercept for x in events], ":", label=f"fit r²={r2:.3f}")
        rebuilt.legend()
    rebuilt.set_xlabel("events in the stream")
    rebuilt.set_ylabel("seconds")
    rebuilt.set_title("rebuild of the 'sessions' projection")
    roles = list(curves.memory)
    memory.bar(roles, [curves.memory[r] for r in roles])
    memory.set_ylabel("peak RSS, MiB")
    memory.set_title("memory of each role under load")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least squares y = a*x + b; returns (a, b, r²)."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    a = sxy / sxx if sxx else 0.0
    b = mean_y - a * mean_x
    total = sum((y - mean_y) ** 2 for y in ys)
    residual = sum((y - (a * x + b)) ** 2 for x, y in zip(xs, ys, strict=True))
    return a, b, 1 - residual / total if total else 1.0
