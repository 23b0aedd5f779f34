"""The command worker handles what the queue holds in batches, and keeps each session's order.

The commands are queued while no worker runs, so the worker's first pulls find them all:
sessions with one command go through `CommandHandler.handle_many` together; a session with
several commands in one batch is handled one command after the other, in queue order.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import nats
from nats.aio.subscription import Subscription
from nats.js.client import JetStreamContext

from orchestrator.bootstrap import orchestrator
from orchestrator.client import CheckoutClient
from orchestrator.jetstream.streams import StreamLayout, ensure_streams
from orchestrator.jetstream.wire import COMMAND_ID, REPLY_TO, parse_reply
from tests.support.apps import settings_for
from tests.support.builders import new_session_id

SESSIONS = 40


@dataclass
class _Queue:
    """The command queue of a fresh layout, and an inbox for the replies to what is queued."""

    layout: StreamLayout
    js: JetStreamContext
    inbox: str
    replies: Subscription

    async def publish(
        self, command: str, body: dict[str, object], command_id: str, reply: str
    ) -> None:
        headers = {COMMAND_ID: command_id, REPLY_TO: f"{self.inbox}.{reply}"}
        subject = f"{self.layout.commands_prefix}.{command}"
        await self.js.publish(subject, json.dumps(body).encode(), headers=headers)


@asynccontextmanager
async def _queue(nats_url: str, layout: StreamLayout) -> AsyncIterator[_Queue]:
    nc = await nats.connect(nats_url)
    try:
        await ensure_streams(nc, layout)
        inbox = nc.new_inbox()
        yield _Queue(layout, nc.jetstream(), inbox, await nc.subscribe(f"{inbox}.*"))
    finally:
        await nc.close()


async def test_a_batch_keeps_each_sessions_commands_in_order(nats_url, stream_names):
    settings = settings_for(stream_names)
    layout = settings.layout()
    alone = [new_session_id() for _ in range(SESSIONS)]
    ordered = [new_session_id() for _ in range(SESSIONS)]
    sent = 0
    async with _queue(nats_url, layout) as queue:

        async def send(command: str, body: dict[str, object]) -> None:
            nonlocal sent
            sent += 1
            await queue.publish(command, body, f"c-{sent}-{body['session_id']}", str(sent))

        for sid in alone:
            await send("create", {"session_id": sid, "currency": "EUR", "amount": 700})
        for sid in ordered:  # cancel right after create: handled out of order, it is refused
            await send("create", {"session_id": sid, "currency": "EUR", "amount": 900})
            await send("cancel", {"session_id": sid, "reason": "changed my mind"})
        async with orchestrator(settings, nats_url) as system:
            answers = [
                parse_reply((await queue.replies.next_msg(timeout=30)).data) for _ in range(sent)
            ]
            batches = system.commands.batches
        assert [a.status for a in answers] == ["accepted"] * sent
        assert batches < sent  # pulled together, not one by one
        async with await CheckoutClient.connect(nats_url, layout) as client:
            for sid in ordered:
                history = [r.event.type for r in await client.history(sid)]
                assert history == ["requested", "canceled"], sid
            for sid in alone:
                assert [r.event.type for r in await client.history(sid)] == ["requested"]


async def test_a_batch_of_retried_commands_is_answered_from_the_stored_events(
    nats_url, stream_names
):
    settings = settings_for(stream_names)
    layout = settings.layout()
    sessions = [new_session_id() for _ in range(SESSIONS)]
    async with _queue(nats_url, layout) as queue:
        answers = []
        for round_ in (1, 2):  # the same commands again: a client retrying all of them
            for index, sid in enumerate(sessions):
                body: dict[str, object] = {"session_id": sid, "currency": "EUR", "amount": 700}
                await queue.publish("create", body, f"c-{sid}", f"{round_}-{index}")
            async with orchestrator(settings, nats_url):
                answers.append(
                    [parse_reply((await queue.replies.next_msg(timeout=30)).data) for _ in sessions]
                )
        first, second = answers
        assert [a.duplicate for a in first] == [False] * SESSIONS
        assert [a.duplicate for a in second] == [True] * SESSIONS
        by_session = {a.session_id: a.sequence for a in first}
        assert {a.session_id: a.sequence for a in second} == by_session
        async with await CheckoutClient.connect(nats_url, layout) as client:
            for sid in sessions:
                assert len(await client.history(sid)) == 1
