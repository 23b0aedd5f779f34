"""The command worker handles what the queue holds in batches, and keeps each session's order.

The commands are queued while no worker runs, so the worker's first pulls find them all:
sessions with one command go through `CommandHandler.handle_many` together; a session with
several commands in one batch is handled one command after the other, in queue order.
"""

from __future__ import annotations

import json

import nats

from orchestrator.bootstrap import orchestrator
from orchestrator.client import CheckoutClient
from orchestrator.jetstream.streams import ensure_streams
from orchestrator.jetstream.wire import COMMAND_ID, REPLY_TO, parse_reply
from tests.support.apps import settings_for
from tests.support.builders import new_session_id

SESSIONS = 40


async def test_a_batch_keeps_each_sessions_commands_in_order(nats_url, stream_names):
    settings = settings_for(stream_names)
    layout = settings.layout()
    nc = await nats.connect(nats_url)
    await ensure_streams(nc, layout)
    js = nc.jetstream()
    inbox = nc.new_inbox()
    replies = await nc.subscribe(f"{inbox}.*")
    alone = [new_session_id() for _ in range(SESSIONS)]
    ordered = [new_session_id() for _ in range(SESSIONS)]
    sent = 0

    async def send(command: str, body: dict[str, object]) -> None:
        nonlocal sent
        sent += 1
        headers = {COMMAND_ID: f"c-{sent}-{body['session_id']}", REPLY_TO: f"{inbox}.{sent}"}
        await js.publish(f"{layout.commands_prefix}.{command}", json.dumps(body).encode(),
                         headers=headers)  # fmt: skip

    for sid in alone:
        await send("create", {"session_id": sid, "currency": "EUR", "amount": 700})
    for sid in ordered:  # cancel right after create: handled out of order, it would be refused
        await send("create", {"session_id": sid, "currency": "EUR", "amount": 900})
        await send("cancel", {"session_id": sid, "reason": "changed my mind"})
    try:
        async with orchestrator(settings, nats_url) as system:
            answers = [parse_reply((await replies.next_msg(timeout=30)).data) for _ in range(sent)]
            batches = system.commands.batches
        assert [a.status for a in answers] == ["accepted"] * sent
        assert batches < sent  # pulled together, not one by one
        async with await CheckoutClient.connect(nats_url, layout) as client:
            for sid in ordered:
                history = [r.event.type for r in await client.history(sid)]
                assert history == ["requested", "canceled"], sid
            for sid in alone:
                assert [r.event.type for r in await client.history(sid)] == ["requested"]
    finally:
        await nc.close()


async def test_a_batch_of_retried_commands_is_answered_from_the_stored_events(
    nats_url, stream_names
):
    settings = settings_for(stream_names)
    layout = settings.layout()
    nc = await nats.connect(nats_url)
    await ensure_streams(nc, layout)
    js = nc.jetstream()
    inbox = nc.new_inbox()
    replies = await nc.subscribe(f"{inbox}.*")
    sessions = [new_session_id() for _ in range(SESSIONS)]

    async def queue_all(round_: int) -> None:
        for index, sid in enumerate(sessions):
            body = json.dumps({"session_id": sid, "currency": "EUR", "amount": 700}).encode()
            headers = {COMMAND_ID: f"c-{sid}", REPLY_TO: f"{inbox}.{round_}-{index}"}
            await js.publish(f"{layout.commands_prefix}.create", body, headers=headers)

    try:
        answers = []
        for round_ in (1, 2):  # the same commands again: a client retrying all of them
            await queue_all(round_)
            async with orchestrator(settings, nats_url):
                answers.append(
                    [parse_reply((await replies.next_msg(timeout=30)).data) for _ in sessions]
                )
        first, second = answers
        assert [a.duplicate for a in first] == [False] * SESSIONS
        assert [a.duplicate for a in second] == [True] * SESSIONS
        by_session = {a.session_id: a.sequence for a in first}
        assert {a.session_id: a.sequence for a in second} == by_session
        async with await CheckoutClient.connect(nats_url, layout) as client:
            for sid in sessions:
                assert len(await client.history(sid)) == 1
    finally:
        await nc.close()
