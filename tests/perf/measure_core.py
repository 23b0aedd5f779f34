"""Sequential append, load and command round-trip figures (issue 2 note).

Usage: PYTHONPATH=. python tests/perf/measure_core.py [sync_interval, e.g. always]
"""

import asyncio
import statistics
import sys
import tempfile
import time
import uuid

import nats

from orchestrator.bootstrap import orchestrator
from orchestrator.client import CheckoutClient
from orchestrator.embedded import EmbeddedNats
from orchestrator.event_store import EventStore
from orchestrator.settings import Settings
from orchestrator.streams import StreamLayout, ensure_streams
from tests.builders import lifecycle, metadata, new_session_id


async def main(url):
    tag = uuid.uuid4().hex[:8]
    layout = StreamLayout(
        events_stream=f"M{tag}",
        events_prefix=f"m{tag}.events",
        commands_stream=f"MC{tag}",
        commands_prefix=f"m{tag}.commands",
    )
    nc = await nats.connect(url)
    await ensure_streams(nc, layout)
    store = EventStore(nc, layout)
    lat = []
    t0 = time.perf_counter()
    n = 2000
    for _ in range(n):
        sid = new_session_id()
        ev = lifecycle(sid)[:3]
        s = time.perf_counter()
        await store.append(sid, ev, metadata(n=3), expected_version=0)
        lat.append(time.perf_counter() - s)
    dt = time.perf_counter() - t0
    print(
        f"append (3-event atomic batch, sequential): {n / dt:,.0f} sessions/s = {3 * n / dt:,.0f} events/s, p50 {statistics.median(lat) * 1e3:.2f} ms, p99 {sorted(lat)[int(0.99 * n)] * 1e3:.2f} ms"
    )
    lat = []
    t0 = time.perf_counter()
    for _ in range(n):
        sid = new_session_id()
        s = time.perf_counter()
        await store.load(sid)
        lat.append(time.perf_counter() - s)
    print(f"load (empty session): p50 {statistics.median(lat) * 1e3:.2f} ms")
    settings = Settings(
        events_stream=layout.events_stream,
        events_prefix=layout.events_prefix,
        commands_stream=layout.commands_stream,
        commands_prefix=layout.commands_prefix,
    )
    async with orchestrator(settings, url), await CheckoutClient.connect(url, layout) as c:
        lat = []
        n = 500
        t0 = time.perf_counter()
        for _ in range(n):
            s = time.perf_counter()
            await c.create_session(currency="EUR", amount=100)
            lat.append(time.perf_counter() - s)
        dt = time.perf_counter() - t0
        print(
            f"create command over NATS, sequential round trip (no provider): {n / dt:,.0f}/s, p50 {statistics.median(lat) * 1e3:.2f} ms, p99 {sorted(lat)[int(0.99 * n)] * 1e3:.2f} ms"
        )
    await store.close()
    await nc.close()


with (
    tempfile.TemporaryDirectory() as d,
    EmbeddedNats(d, sync_interval=sys.argv[1] if len(sys.argv) > 1 else None) as server,
):
    asyncio.run(main(server.url))
