"""The command path over NATS: command -> load -> decide -> append -> reply.

The load generator here publishes create commands durably (a JetStream publish to the
command stream, as `CheckoutClient` does) and waits for each reply on one shared inbox.
The same generator drives:
- ours: `checkout-orchestrator up --role commands` in its own process;
- raw: `raw_worker`, the minimal nats-py loop doing the same I/O (pull the command, a
  direct get of the session, one OCC append, the reply, the ack), in its own process.

Throughput is measured with ``concurrency`` commands in flight; latency at a fixed rate.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from ulid import ULID

from events.codec import Headers
from events.subjects import event_subject, session_filter
from orchestrator.jetstream.streams import StreamLayout
from orchestrator.jetstream.wire import COMMAND_ID, CORRELATION_ID, REPLY_TO

__all__ = ["Latency", "Sender", "raw_worker"]

_TIMEOUT = 30.0


def create_payload(session_id: str, *, with_provider: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {"session_id": session_id, "currency": "EUR", "amount": 2500}
    if with_provider:
        payload |= {
            "customer": {"email": "buyer@example.test", "country": "FR"},
            "urls": {
                "success_url": "https://shop.example/ok",
                "cancel_url": "https://shop.example/no",
            },
        }
    return payload


def _p50_p99_ms(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    return (
        statistics.median(ordered) * 1000,
        ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
    )


@dataclass(frozen=True, slots=True)
class Latency:
    rate: int
    achieved: float
    commands: int
    p50_ms: float
    p99_ms: float
    rejected: int


class Sender:
    """Publishes commands to the command stream; replies come back on one subscription."""

    def __init__(self, nc: NatsClient, layout: StreamLayout, *, with_provider: bool) -> None:
        self._nc = nc
        self._layout = layout
        self._with_provider = with_provider
        self._prefix = nc.new_inbox()
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        self._ids = itertools.count()
        self.rejected = 0

    async def start(self) -> None:
        await self._nc.subscribe(f"{self._prefix}.*", cb=self._reply)

    async def _reply(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject, None)
        if future is not None and not future.done():
            future.set_result(msg.data)

    async def create(self) -> float:
        """One create command; returns its latency in seconds (publish to reply)."""
        command_id = str(ULID())
        inbox = f"{self._prefix}.{next(self._ids)}"
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[inbox] = future
        body = json.dumps(
            create_payload(f"cs_{command_id}", with_provider=self._with_provider)
        ).encode()
        headers = {COMMAND_ID: command_id, CORRELATION_ID: command_id, REPLY_TO: inbox}
        started = time.perf_counter()
        ack = await self._nc.request(
            f"{self._layout.commands_prefix}.create", body, timeout=_TIMEOUT, headers=headers
        )
        if b'"error"' in ack.data:
            raise RuntimeError(f"the command stream refused a command: {ack.data!r}")
        reply = await asyncio.wait_for(future, _TIMEOUT)
        if b'"rejected"' in reply:
            self.rejected += 1
        return time.perf_counter() - started

    async def one_at_a_time(self, count: int) -> tuple[float, float]:
        """p50 and p99 latency (ms) of ``count`` commands sent one after the other."""
        return _p50_p99_ms([await self.create() for _ in range(count)])

    async def throughput(self, count: int, concurrency: int) -> float:
        """Commands per second with ``concurrency`` in flight."""
        remaining = iter(range(count))

        async def worker() -> None:
            for _ in remaining:
                await self.create()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)

    async def latency(self, rate: int, seconds: float) -> Latency:
        """Commands issued at a fixed ``rate`` (open loop); latency percentiles."""
        latencies: list[float] = []
        tasks: set[asyncio.Task[None]] = set()

        async def one() -> None:
            latencies.append(await self.create())

        started = time.perf_counter()
        issued = 0
        while (elapsed := time.perf_counter() - started) < seconds:
            for _ in range(int(elapsed * rate) - issued):
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                issued += 1
            await asyncio.sleep(0.001)
        await asyncio.gather(*tasks)
        total = time.perf_counter() - started
        p50_ms, p99_ms = _p50_p99_ms(latencies)
        return Latency(
            rate=rate,
            achieved=issued / total,
            commands=issued,
            p50_ms=p50_ms,
            p99_ms=p99_ms,
            rejected=self.rejected,
        )


# --- the raw baseline: a minimal worker loop in nats-py -----------------------------------


async def raw_worker(nc: NatsClient, layout: StreamLayout, *, in_flight: int = 256) -> None:
    """Serve create commands (no provider) until cancelled: the I/O of our command path
    without its parsing, validation, decider, envelope or telemetry."""
    js = nc.jetstream()
    pull = await js.pull_subscribe(
        f"{layout.commands_prefix}.>", durable="raw-bench", stream=layout.commands_stream
    )
    slots = asyncio.Semaphore(in_flight)
    tasks: set[asyncio.Task[None]] = set()

    async def handle(msg: Msg) -> None:
        try:
            await _raw_handle(nc, layout, msg)
        finally:
            slots.release()

    while True:
        try:
            batch = await pull.fetch(64, timeout=1.0)
        except TimeoutError:
            continue
        for msg in batch:
            await slots.acquire()
            task = asyncio.create_task(handle(msg))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


async def _raw_handle(nc: NatsClient, layout: StreamLayout, msg: Msg) -> None:
    headers: Mapping[str, str] = msg.headers or {}
    command = json.loads(msg.data)
    sid = command["session_id"]
    wildcard = session_filter(layout.events_prefix, sid, layout.partitions)
    load = {"seq": 1, "next_by_subj": wildcard, "batch": 256}
    found = await nc.request(
        f"$JS.API.DIRECT.GET.{layout.events_stream}", json.dumps(load).encode(), timeout=_TIMEOUT
    )
    version = (
        int(found.headers["Nats-Sequence"])
        if found.headers and "Nats-Sequence" in (found.headers)
        else 0
    )
    now = datetime.now(UTC).isoformat()
    event = {
        "type": "requested",
        "schema_version": 1,
        "session_id": sid,
        "occurred_at": now,
        "mode": "payment",
        "amount": {"currency": command["currency"], "amount": command["amount"]},
    }
    command_id = headers[COMMAND_ID]
    ack = await nc.request(
        event_subject(layout.events_prefix, sid, "requested", layout.partitions),
        json.dumps(event).encode(),
        timeout=_TIMEOUT,
        headers={  # the envelope our store writes, so both send the same bytes
            Headers.EVENT_ID: str(ULID()),
            Headers.EVENT_TYPE: "requested",
            Headers.SCHEMA_VERSION: "1",
            Headers.COMMAND_ID: command_id,
            Headers.CORRELATION_ID: headers.get(CORRELATION_ID, command_id),
            Headers.CAUSATION_ID: command_id,
            Headers.OCCURRED_AT: now,
            Headers.MSG_ID: f"{command_id}:0",
            "Nats-Expected-Last-Subject-Sequence": str(version),
            "Nats-Expected-Last-Subject-Sequence-Subject": wildcard,
        },
    )
    sequence = json.loads(ack.data)["seq"]
    reply = {"status": "accepted", "session_id": sid, "sequence": sequence}
    await nc.publish(headers[REPLY_TO], json.dumps(reply).encode())
    await msg.ack()
