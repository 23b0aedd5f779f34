"""Losing the event stream's leader: a real 3-node cluster, SIGKILL, appends resume, no loss.

Writers append whole sessions through the real `EventStore` (a single first event at
expected version 0, an atomic batch of two, then one more, each with the optimistic
concurrency check) while the node leading the R3 event stream is killed with SIGKILL. The
client is connected to that very node, so it loses its connection and the stream its leader
at once. Every append is retried with the same ids until the stream holds it, exactly as a
redelivered command would be. Then the node comes back and catches up, and every
acknowledged event must load back once, in order, and nothing else be in the stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import nats
import pytest
from nats.aio.client import Client

from events.catalog import CheckoutEvent
from events.envelope import EventMetadata
from orchestrator.embedded import EmbeddedNats, EmbeddedNatsCluster
from orchestrator.errors import ConcurrencyConflict, StoreUnavailable
from orchestrator.jetstream.event_store import DuplicateCommand, EventStore, SessionHistory
from orchestrator.jetstream.streams import StreamLayout
from tests.support.builders import lifecycle, metadata, new_session_id
from tests.support.infra import (
    all_replicas_current,
    ensure_streams_on_new_cluster,
    stream_leader,
)
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

WRITERS = 4
RESUME_WITHIN = 10.0  # seconds from the kill to the first append acknowledged after it
RETRY_FOR = 30.0  # one append is retried at most this long
BEFORE_THE_KILL = 20  # appends acknowledged before the leader is killed
WHILE_DOWN = 10  # appends acknowledged under the new leader, then after the restart


@dataclass
class Ledger:
    """What the writers know the stream holds: event ids per session, in append order."""

    acknowledged: dict[str, list[str]] = field(default_factory=dict)
    # (started, finished) of each append whose last attempt began at `started`
    appends: list[tuple[float, float]] = field(default_factory=list)
    retried: int = 0
    recovered_as_duplicate: int = 0

    def first_acknowledged_after(self, instant: float) -> float | None:
        done = [finished for started, finished in self.appends if started > instant]
        return min(done) if done else None


def _acknowledged_after(ledger: Ledger, instant: float) -> int:
    return sum(1 for started, _ in ledger.appends if started > instant)


async def load_retrying(store: EventStore, session_id: str) -> SessionHistory:
    return await wait_until(
        lambda: store.load(session_id),
        RETRY_FOR,
        what=f"{session_id} to load",
        ignoring=(StoreUnavailable,),
    )


async def append_until_stored(
    store: EventStore,
    ledger: Ledger,
    session_id: str,
    events: Sequence[CheckoutEvent],
    meta: Sequence[EventMetadata],
    expected: int,
) -> int:
    """Append (same ids on every try) until the stream holds it; the session's new version."""
    deadline = time.monotonic() + RETRY_FOR
    command_id = meta[0].command_id
    while True:
        started = time.monotonic()
        try:
            result = await store.append(session_id, events, meta, expected_version=expected)
            version = result.last_sequence
        except DuplicateCommand:
            # an earlier try was stored after all (its acknowledgement was lost)
            ledger.recovered_as_duplicate += 1
            version = (await load_retrying(store, session_id)).version
        except ConcurrencyConflict:
            # nobody else writes this session: only an earlier try of ours can have moved it
            history = await load_retrying(store, session_id)
            assert history.result_of(command_id) is not None, (
                f"{session_id}: conflict at {expected} without our command in the history"
            )
            ledger.recovered_as_duplicate += 1
            version = history.version
        except StoreUnavailable:
            ledger.retried += 1
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)  # the writer's retry pace, as a redelivered command's
            continue
        ledger.appends.append((started, time.monotonic()))
        ledger.acknowledged.setdefault(session_id, []).extend(m.event_id for m in meta)
        return version


async def write_sessions(store: EventStore, ledger: Ledger, stop: asyncio.Event) -> None:
    while not stop.is_set():
        sid = new_session_id()
        requested, routed, opened, completed = lifecycle(sid)
        version = await append_until_stored(store, ledger, sid, [requested], metadata(), 0)
        version = await append_until_stored(
            store, ledger, sid, [routed, opened], metadata(n=2), version
        )
        await append_until_stored(store, ledger, sid, [completed], metadata(), version)


async def assert_everything_acknowledged_loads_once(
    store: EventStore, admin: Client, ledger: Ledger
) -> None:
    """Every acknowledged event loads back, once, in order; the stream holds nothing else."""
    loaded_total = 0
    for sid, wanted in ledger.acknowledged.items():
        history = await load_retrying(store, sid)
        ids = [recorded.metadata.event_id for recorded in history.events]
        assert ids == wanted, sid
        sequences = [recorded.sequence for recorded in history.events]
        assert sequences == sorted(set(sequences)), sid
        loaded_total += len(ids)
    info = await admin.jetstream().stream_info(store.layout.events_stream)
    assert info.state.messages == loaded_total


async def test_appends_survive_losing_the_stream_leader(tmp_path):
    layout = StreamLayout(replicas=3)  # the deployment's layout: CHECKOUT at R3
    with EmbeddedNatsCluster(tmp_path / "cluster", sync_interval="always") as cluster:
        admin = await nats.connect(cluster.urls, max_reconnect_attempts=-1)
        await ensure_streams_on_new_cluster(admin, layout)
        leader: EmbeddedNats = cluster.node(await stream_leader(admin, layout.events_stream))
        # the writers' connection starts on the leader, so the kill takes both away at once
        servers = [leader.url, *(url for url in cluster.urls if url != leader.url)]
        nc = await nats.connect(
            servers,
            dont_randomize=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
            connect_timeout=2,
        )
        store = EventStore(nc, layout, timeout=1.0)
        ledger = Ledger()
        stop = asyncio.Event()
        writers = [asyncio.create_task(write_sessions(store, ledger, stop)) for _ in range(WRITERS)]
        try:
            await wait_until(
                lambda: len(ledger.appends) >= BEFORE_THE_KILL,
                20,
                what=f"{BEFORE_THE_KILL} appends acknowledged by the first leader",
            )
            killed_at = time.monotonic()
            leader.kill()  # SIGKILL
            resumed = await wait_until(
                lambda: ledger.first_acknowledged_after(killed_at),
                RESUME_WITHIN + 5,
                what="an append acknowledged after the kill",
            )
            new_leader = await stream_leader(admin, layout.events_stream)
            # appends go on under the new leader while the old one is still down
            under_new_leader = time.monotonic()
            await wait_until(
                lambda: _acknowledged_after(ledger, under_new_leader) >= WHILE_DOWN,
                20,
                what=f"{WHILE_DOWN} appends under the new leader",
            )
            await asyncio.to_thread(leader.start)  # same port, same store
            restarted_at = time.monotonic()
            await all_replicas_current(admin, layout.events_stream)
            caught_up = time.monotonic() - restarted_at
            # ... and once the old leader is back and current
            back_at = time.monotonic()
            await wait_until(
                lambda: _acknowledged_after(ledger, back_at) >= WHILE_DOWN,
                20,
                what=f"{WHILE_DOWN} appends once the node is back",
            )
        finally:
            stop.set()
            await asyncio.gather(*writers)

        resume_seconds = resumed - killed_at
        print(  # noqa: T201 - the figures this test exists to observe (pytest -s)
            f"\nkilled leader {leader.server_name}; new leader {new_leader}; "
            f"appends resumed after {resume_seconds:.2f} s; restarted node current after "
            f"{caught_up:.2f} s; {len(ledger.appends)} appends, {ledger.retried} retried tries, "
            f"{ledger.recovered_as_duplicate} recovered as already stored"
        )
        assert resume_seconds < RESUME_WITHIN
        assert new_leader != leader.server_name
        assert ledger.first_acknowledged_after(restarted_at) is not None

        # Optimistic concurrency still holds under the new leader.
        sid = next(iter(ledger.acknowledged))
        with pytest.raises(ConcurrencyConflict):
            await store.append(sid, lifecycle(sid)[:1], metadata(), expected_version=0)

        await assert_everything_acknowledged_loads_once(store, admin, ledger)
        await store.close()
        await nc.close()
        await admin.close()
