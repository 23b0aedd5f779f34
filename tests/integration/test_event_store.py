"""The JetStream event store against a real nats-server (>= 2.12) started by a fixture."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest

from orchestrator.errors import ConcurrencyConflict, StreamMisconfigured, UnsupportedServer
from orchestrator.jetstream.event_store import DuplicateCommand, EventStore
from orchestrator.jetstream.streams import ensure_streams, events_stream_config
from tests.support.builders import layout_for, lifecycle, metadata, new_session_id, requested
from tests.support.waiting import wait_until


@pytest.fixture
async def nc(nats_url):
    connection = await nats.connect(nats_url)
    yield connection
    await connection.close()


@pytest.fixture
async def store(nc, stream_names):
    layout = layout_for(stream_names)
    await ensure_streams(nc, layout)
    event_store = EventStore(nc, layout)
    yield event_store
    await event_store.close()


async def test_stream_is_created_with_the_safety_flags(nc, store):
    info = await nc.jetstream().stream_info(store.layout.events_stream)
    config = info.config
    assert (config.deny_delete, config.deny_purge, config.allow_direct) == (True, True, True)
    assert config.allow_atomic is True
    assert not config.allow_rollup_hdrs
    assert config.storage == "file"
    assert (config.max_age or 0) == 0
    assert config.duplicate_window == pytest.approx(300)


async def test_existing_stream_with_unsafe_flags_is_refused(nc, stream_names):
    layout = layout_for(stream_names)
    unsafe = events_stream_config(layout)
    unsafe.deny_purge = False
    unsafe.allow_atomic = False
    await nc.jetstream().add_stream(unsafe)
    with pytest.raises(StreamMisconfigured, match="deny_purge"):
        await ensure_streams(nc, layout)


async def test_a_server_older_than_2_12_is_refused_with_a_clear_message():
    try:
        old = await nats.connect(
            "nats://127.0.0.1:4222", connect_timeout=1, max_reconnect_attempts=0
        )
    except Exception:
        pytest.skip("no Debian nats-server on 127.0.0.1:4222 on this machine")
    try:
        if old.connected_server_version.minor >= 12 or old.connected_server_version.major > 2:
            pytest.skip("the server on 4222 is recent")
        with pytest.raises(UnsupportedServer, match=r"too old.*2\.12"):
            await ensure_streams(old, layout_for_defaults())
    finally:
        await old.close()


def layout_for_defaults():
    from orchestrator.jetstream.streams import StreamLayout

    return StreamLayout(events_stream="NEVER_CREATED", commands_stream="NEVER_CREATED_C")


async def test_append_then_load_returns_events_in_order(store):
    sid = new_session_id()
    events = lifecycle(sid)
    result = await store.append(sid, events, metadata(n=len(events)), expected_version=0)
    history = await store.load(sid)
    assert [r.event for r in history.events] == events
    assert [r.sequence for r in history.events] == list(
        range(result.first_sequence, result.last_sequence + 1)
    )
    assert history.version == result.last_sequence


async def test_load_of_unknown_session_is_empty(store):
    history = await store.load(new_session_id())
    assert history.events == ()
    assert history.version == 0


async def test_load_reads_long_histories_across_direct_get_batches(store):
    sid = new_session_id()
    version = 0
    for _ in range(300):  # more than one direct-get batch (256)
        result = await store.append(sid, [requested(sid)], metadata(), expected_version=version)
        version = result.last_sequence
    history = await store.load(sid)
    assert len(history.events) == 300
    assert history.version == version


async def test_ten_concurrent_appends_expecting_the_same_version_one_wins(store):
    sid = new_session_id()
    first = await store.append(sid, [requested(sid)], metadata(), expected_version=0)

    async def attempt():
        events = lifecycle(sid)[1:3]
        return await store.append(
            sid, events, metadata(n=len(events)), expected_version=first.last_sequence
        )

    results = await asyncio.gather(*(attempt() for _ in range(10)), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert len(losers) == 9
    assert all(isinstance(r, ConcurrencyConflict) for r in losers)
    assert len((await store.load(sid)).events) == 3


async def test_other_sessions_do_not_conflict(store):
    a, b = new_session_id(), new_session_id()
    await store.append(a, [requested(a)], metadata(), expected_version=0)
    # b expects 0 although the stream moved on: the expectation is per session subject
    await store.append(b, [requested(b)], metadata(), expected_version=0)
    assert len((await store.load(b)).events) == 1


async def test_an_atomic_batch_whose_expectation_fails_stores_nothing(nc, store):
    sid = new_session_id()
    await store.append(sid, [requested(sid)], metadata(), expected_version=0)
    before = (await nc.jetstream().stream_info(store.layout.events_stream)).state.messages
    events = lifecycle(sid)[1:]
    with pytest.raises(ConcurrencyConflict):
        await store.append(sid, events, metadata(n=len(events)), expected_version=0)
    after = (await nc.jetstream().stream_info(store.layout.events_stream)).state.messages
    assert after == before
    assert len((await store.load(sid)).events) == 1


async def test_the_same_command_twice_is_refused_by_the_server_as_duplicate(store):
    sid = new_session_id()
    events = lifecycle(sid)[:2]
    meta = metadata("cmd-dup", n=2)
    await store.append(sid, events, meta, expected_version=0)
    with pytest.raises((DuplicateCommand, ConcurrencyConflict)):
        await store.append(sid, events, meta, expected_version=0)
    history = await store.load(sid)
    assert len(history.events) == 2
    assert history.result_of("cmd-dup") == history.version


async def test_headers_carry_the_envelope(nc, store):
    sid = new_session_id()
    meta = metadata("cmd-headers")
    result = await store.append(sid, [requested(sid)], meta, expected_version=0)
    msg = await nc.jetstream().get_msg(store.layout.events_stream, result.last_sequence)
    headers = msg.headers
    assert headers["Checkout-Event-Type"] == "requested"
    assert headers["Checkout-Schema-Version"] == "2"  # v2: sealed customers
    assert headers["Checkout-Command-Id"] == "cmd-headers"
    assert headers["Checkout-Event-Id"] == meta[0].event_id
    assert headers["Nats-Msg-Id"] == "cmd-headers:0"
    assert json.loads(msg.data)["session_id"] == sid
    partition, session = msg.subject.split(".")[-3:-1]
    assert session == sid
    assert 0 <= int(partition) < store.layout.partitions


@pytest.mark.slow
async def test_kill_9_and_restart_loses_no_acknowledged_event(nats_server, stream_names):
    layout = layout_for(stream_names)
    acknowledged: dict[str, int] = {}
    connection = await nats.connect(
        nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2
    )
    await ensure_streams(connection, layout)
    store = EventStore(connection, layout, timeout=1.0)
    stop = asyncio.Event()

    async def writer():
        while not stop.is_set():
            sid = new_session_id()
            events = lifecycle(sid)
            try:
                result = await store.append(sid, events, metadata(n=4), expected_version=0)
            except Exception:
                await asyncio.sleep(0.05)  # the writer's retry pace while the server is down
                continue
            acknowledged[sid] = result.last_sequence

    tasks = [asyncio.create_task(writer()) for _ in range(4)]
    await wait_until(lambda: len(acknowledged) >= 200, 20, what="200 acknowledged sessions")
    nats_server.kill()
    count_at_kill = len(acknowledged)
    nats_server.restart()
    await wait_until(
        lambda: len(acknowledged) >= count_at_kill + 100, 30, what="appends after the restart"
    )
    stop.set()
    await asyncio.gather(*tasks)
    for sid in acknowledged:
        history = await store.load(sid)
        assert [r.event.type for r in history.events] == [
            "requested",
            "routed",
            "provider_session_opened",
            "completed",
        ], sid
    # atomic batches: no session in the stream holds part of a batch
    per_session: dict[str, int] = {}
    js = connection.jetstream()
    sub = await js.subscribe(f"{layout.events_prefix}.>", ordered_consumer=True)
    total = (await js.stream_info(layout.events_stream)).state.messages
    for _ in range(total):
        msg = await sub.next_msg(timeout=5)
        session = msg.subject.split(".")[-2]
        per_session[session] = per_session.get(session, 0) + 1
    await sub.unsubscribe()
    assert set(per_session.values()) == {4}
    assert set(acknowledged) <= set(per_session)
    await store.close()
    await connection.close()


async def test_load_many_reads_each_session_in_one_round(store):
    full, empty, long = new_session_id(), new_session_id(), new_session_id()
    await store.append(full, lifecycle(full), metadata(n=4), expected_version=0)
    # longer than one direct-get batch (256): the rest is read on its own
    many = [requested(long) for _ in range(300)]
    await store.append(long, many, metadata(n=300), expected_version=0)
    histories = await store.load_many([full, empty, long, full])
    assert list(histories) == [full, empty, long]
    assert histories[full] == await store.load(full)
    assert histories[empty].events == ()
    assert len(histories[long].events) == 300
    sequences = [r.sequence for r in histories[long].events]
    assert sequences == sorted(sequences)


async def test_append_many_gives_each_session_its_own_outcome(store):
    from orchestrator.jetstream.event_store import AppendRequest, AppendResult

    fresh, stale, batch = new_session_id(), new_session_id(), new_session_id()
    first = await store.append(stale, [requested(stale)], metadata(), expected_version=0)
    repeated = metadata()
    outcomes = await store.append_many(
        [
            AppendRequest(fresh, [requested(fresh)], repeated, 0),
            AppendRequest(stale, [requested(stale)], metadata(), 0),  # expects an empty session
            AppendRequest(batch, lifecycle(batch), metadata(n=4), 0),
        ]
    )
    assert isinstance(outcomes[0], AppendResult)
    assert isinstance(outcomes[1], ConcurrencyConflict)
    assert isinstance(outcomes[2], AppendResult)
    assert outcomes[2].last_sequence - outcomes[2].first_sequence == 3
    assert [r.sequence for r in (await store.load(stale)).events] == [first.last_sequence]
    again = await store.append_many([AppendRequest(fresh, [requested(fresh)], repeated, 0)])
    assert isinstance(again[0], ConcurrencyConflict | DuplicateCommand)
    with pytest.raises(ValueError, match="one request per session"):
        await store.append_many([AppendRequest(fresh, [requested(fresh)], metadata(), 1)] * 2)
