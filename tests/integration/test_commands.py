"""Commands end to end over NATS: client -> work queue -> FastStream handler -> store -> reply."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from orchestrator.bootstrap import orchestrator
from orchestrator.client import CheckoutClient, CommandPending, CommandRejected
from orchestrator.jetstream.command_service import DURABLE
from orchestrator.jetstream.streams import ensure_streams
from orchestrator.jetstream.wire import COMMAND_ID, REPLY_TO, parse_reply
from orchestrator.telemetry import build_telemetry
from tests.support.apps import settings_for
from tests.support.builders import layout_for, new_session_id
from tests.support.waiting import wait_until


@pytest.fixture
async def running(nats_url, stream_names):
    settings = settings_for(stream_names)
    async with orchestrator(settings, nats_url) as system:
        yield system


@pytest.fixture
async def client(nats_url, stream_names):
    async with await CheckoutClient.connect(nats_url, layout_for(stream_names)) as c:
        yield c


async def stream_messages(nats_url, stream) -> int:
    nc = await nats.connect(nats_url)
    try:
        return (await nc.jetstream().stream_info(stream)).state.messages
    finally:
        await nc.close()


async def test_create_is_accepted_with_session_id_and_sequence(running, client):
    sid = new_session_id()
    reply = await client.create_session(currency="usd", amount=1999, session_id=sid)
    assert reply.session_id == sid
    assert reply.sequence >= 1
    assert reply.appended == 1
    history = await client.history(sid)
    assert history[-1].sequence == reply.sequence
    assert history[0].event.amount.currency == "USD"
    assert history[0].event.amount.amount == 1999


async def test_the_same_command_twice_appends_once_and_replies_the_same(running, client):
    sid = new_session_id()
    first = await client.create_session(
        currency="EUR", amount=500, session_id=sid, command_id="c-1"
    )
    second = await client.create_session(
        currency="EUR", amount=500, session_id=sid, command_id="c-1"
    )
    assert (second.session_id, second.sequence) == (first.session_id, first.sequence)
    assert second.duplicate is True
    assert len(await client.history(sid)) == 1


async def test_create_without_session_id_derives_a_stable_one_from_the_command_id(running, client):
    first = await client.send("create", {"currency": "EUR", "amount": 100}, command_id="c-derive")
    again = await client.send("create", {"currency": "EUR", "amount": 100}, command_id="c-derive")
    assert first.session_id == again.session_id
    assert first.session_id.startswith("cs_")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"currency": "ZZZ", "amount": 100}, "currency"),
        ({"currency": "USD", "amount": 0}, "amount"),
        ({"currency": "USD", "amount": 10.5}, "amount"),
        (
            {"currency": "USD", "amount": 100, "metadata": {f"k{i}": "v" for i in range(51)}},
            "metadata",
        ),
        ({"currency": "USD", "amount": 100, "urls": {"success_url": "/relative"}}, "urls"),
        ({"currency": "USD", "amount": 100, "surprise": True}, "surprise"),
    ],
)
async def test_invalid_create_is_rejected_typed_and_appends_nothing(
    running, client, nats_url, payload, field
):
    before = await stream_messages(nats_url, running.layout.events_stream)
    with pytest.raises(CommandRejected) as rejected:
        await client.send("create", {"session_id": new_session_id(), **payload})
    assert rejected.value.code == "validation_failed"
    assert any(field in map(str, e["loc"]) for e in rejected.value.error["errors"])
    assert await stream_messages(nats_url, running.layout.events_stream) == before


async def test_unknown_command_type_is_rejected(running, client, nats_url):
    before = await stream_messages(nats_url, running.layout.events_stream)
    with pytest.raises(CommandRejected) as rejected:
        await client.send("refund_everything", {"session_id": new_session_id()})
    assert rejected.value.code == "unknown_command"
    assert await stream_messages(nats_url, running.layout.events_stream) == before


async def test_malformed_payload_is_rejected(running, nats_url):
    nc = await nats.connect(nats_url)
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, max_msgs=1)
    for body in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        await nc.jetstream().publish(
            f"{running.layout.commands_prefix}.create",
            body,
            headers={COMMAND_ID: "c-malformed", REPLY_TO: inbox},
        )
    reply = parse_reply((await sub.next_msg(timeout=10)).data)
    assert reply.status == "rejected"
    assert reply.code == "validation_failed"
    await nc.close()


async def test_missing_command_id_is_rejected(running, nats_url):
    nc = await nats.connect(nats_url)
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, max_msgs=1)
    await nc.jetstream().publish(
        f"{running.layout.commands_prefix}.create",
        json.dumps({"currency": "EUR", "amount": 1}).encode(),
        headers={REPLY_TO: inbox},
    )
    reply = parse_reply((await sub.next_msg(timeout=10)).data)
    assert reply.code == "validation_failed"
    await nc.close()


async def test_illegal_transition_is_rejected_and_appends_nothing(running, client):
    sid = new_session_id()
    await client.create_session(currency="EUR", amount=500, session_id=sid)
    await client.expire(sid)
    with pytest.raises(CommandRejected) as rejected:
        await client.send("complete", {"session_id": sid, "payment_status": "paid"})
    assert rejected.value.code == "illegal_transition"
    assert [r.event.type for r in await client.history(sid)] == ["requested", "expired"]


async def test_command_for_unknown_session_is_rejected(running, client):
    with pytest.raises(CommandRejected) as rejected:
        await client.cancel(new_session_id())
    assert rejected.value.code == "session_not_found"


async def test_a_command_sent_while_no_handler_runs_is_handled_later(nats_url, stream_names):
    settings = settings_for(stream_names)
    layout = settings.layout()
    nc = await nats.connect(nats_url)
    await ensure_streams(nc, layout)  # the streams exist; no handler consumes yet
    await nc.close()
    sid = new_session_id()
    async with await CheckoutClient.connect(nats_url, layout) as client:
        with pytest.raises(CommandPending):
            await client.create_session(
                currency="XOF", amount=5000, session_id=sid, command_id="c-later", timeout=0.5
            )
        assert await client.history(sid) == ()
        async with orchestrator(settings, nats_url):
            await wait_until(lambda: client.history(sid), 15, what="the queued create handled")
            # asking again with the same id is answered, not re-applied
            reply = await client.create_session(
                currency="XOF", amount=5000, session_id=sid, command_id="c-later"
            )
        assert reply.duplicate is True
        assert len(await client.history(sid)) == 1


async def test_subscribe_by_session_type_and_from_sequence(running, client):
    sid, other = new_session_id(), new_session_id()
    first = await client.create_session(currency="EUR", amount=100, session_id=sid)
    await client.create_session(currency="EUR", amount=100, session_id=other)
    await client.cancel(sid, "changed my mind")

    async def take(n, **filters):
        out = []
        async with asyncio.timeout(10):
            async for recorded in client.events(**filters):
                out.append(recorded)
                if len(out) == n:
                    return out
        return out

    by_session = await take(2, session_id=sid, from_sequence=1)
    assert [r.event.type for r in by_session] == ["requested", "canceled"]
    by_type = await take(1, event_type="canceled", from_sequence=first.sequence)
    assert by_type[0].session_id == sid
    everything = await take(3, from_sequence=first.sequence)
    assert [r.sequence for r in everything] == sorted(r.sequence for r in everything)

    after = (await client.history(other))[-1].sequence
    live = asyncio.create_task(take(1, session_id=other, from_sequence=after + 1))
    await client.expire(other)
    assert (await live)[0].event.type == "expired"


async def test_a_retry_after_the_dedupe_window_still_appends_nothing(nats_url, stream_names):
    settings = settings_for(stream_names, duplicate_window_seconds=1.0)
    sid = new_session_id()
    async with (
        orchestrator(settings, nats_url),
        await CheckoutClient.connect(nats_url, settings.layout()) as client,
    ):
        first = await client.create_session(
            currency="JPY", amount=1200, session_id=sid, command_id="c-window"
        )
        cancel = await client.cancel(sid)
        # what is tested: time passing beyond the window, so the server forgets the message ids
        await asyncio.sleep(1.5)  # (window = 1 s)
        retried = await client.create_session(
            currency="JPY", amount=1200, session_id=sid, command_id="c-window"
        )
    assert retried.duplicate is True
    assert retried.sequence == first.sequence
    assert [r.sequence for r in await _history(nats_url, settings, sid)] == [
        first.sequence,
        cancel.sequence,
    ]


async def _history(nats_url, settings, sid):
    async with await CheckoutClient.connect(nats_url, settings.layout()) as client:
        return await client.history(sid)


async def test_a_consumer_left_by_an_older_version_gets_unlimited_redelivery(
    nats_url, stream_names
):
    """Before, server faults counted towards max_deliver 5 and a command queued through
    an outage was given up; starting this version upgrades the existing consumer."""
    settings = settings_for(stream_names)
    layout = settings.layout()
    nc = await nats.connect(nats_url)
    try:
        await ensure_streams(nc, layout)
        js = nc.jetstream()
        old = ConsumerConfig(
            durable_name=DURABLE,
            filter_subject=f"{layout.commands_prefix}.>",
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_deliver=5,
        )
        await js.add_consumer(layout.commands_stream, old)
        async with orchestrator(settings, nats_url):
            info = await js.consumer_info(layout.commands_stream, DURABLE)
        assert info.config.max_deliver == -1
    finally:
        await nc.close()


async def test_events_carry_the_callers_trace_when_nothing_is_exported(
    nats_url, stream_names, client
):
    """With no exporter, spans are not recorded and FastStream's tracing middleware is
    left out; the events still carry the caller's trace id, for correlation."""
    settings = settings_for(stream_names)
    caller = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    telemetry = build_telemetry()
    assert not telemetry.exporting
    async with orchestrator(settings, nats_url, telemetry=telemetry):
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(caller)))
        try:
            reply = await client.create_session(currency="EUR", amount=100)
        finally:
            otel_context.detach(token)
    (recorded,) = await client.history(reply.session_id)
    assert recorded.metadata.traceparent is not None
    assert recorded.metadata.traceparent.split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
