"""Hostile NATS command payloads (Hypothesis): every reply is typed, and a rejected
command appends nothing. Random JSON, garbage bytes, mutated valid commands, deep nesting."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from ulid import ULID

from orchestrator.bootstrap import orchestrator
from orchestrator.jetstream.wire import COMMAND_ID, REPLY_TO, RejectedReply, parse_reply
from tests.support.apps import settings_for
from tests.support.builders import create_body

TYPES = ["create", "expire", "cancel", "complete", "record_routing", "nope", ""]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def mutated_create(draw: st.DrawFn) -> bytes:
    body: dict[str, Any] = create_body()
    body.pop("session_id")
    field = draw(st.sampled_from([*body, "amount", "mode", "ui_mode", "expires_at", "extra"]))
    body[field] = draw(json_values)
    return json.dumps(body).encode()


bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.text(max_size=10), json_values, max_size=6).map(
        lambda v: json.dumps(v).encode()
    ),
    mutated_create(),
    st.integers(min_value=100, max_value=50_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=100, max_value=50_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)


@pytest.mark.slow
async def test_every_hostile_command_gets_a_typed_reply_and_appends_nothing(nats_url, stream_names):
    settings = settings_for(stream_names)
    loop = asyncio.get_running_loop()
    seen: dict[str, int] = {}
    async with orchestrator(settings, nats_url) as system:
        js = system.nc.jetstream()

        async def appended() -> int:
            return (await js.stream_info(stream_names.stream)).state.messages

        async def one(command_type: str, body: bytes) -> None:
            before = await appended()
            inbox = system.nc.new_inbox()
            sub = await system.nc.subscribe(inbox, max_msgs=1)
            try:
                subject = f"{stream_names.commands_prefix}.{command_type or 'x.y'}"
                headers = {COMMAND_ID: str(ULID()), REPLY_TO: inbox}
                await js.publish(subject, body, headers=headers)
                msg = await sub.next_msg(timeout=5)
            finally:
                await sub.unsubscribe()
            reply = parse_reply(msg.data)
            if isinstance(reply, RejectedReply):
                assert reply.code != "internal_error", (command_type, body[:200], reply)
                assert reply.error.get("message"), reply
                assert await appended() == before, (command_type, body[:200], reply)
                seen[reply.code] = seen.get(reply.code, 0) + 1
            else:
                seen["accepted"] = seen.get("accepted", 0) + 1

        @given(command_type=st.sampled_from(TYPES), body=bodies)
        @hypothesis_settings(
            max_examples=300,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(command_type: str, body: bytes) -> None:
            asyncio.run_coroutine_threadsafe(one(command_type, body), loop).result(timeout=30)

        await asyncio.to_thread(check)
    assert seen.get("validation_failed", 0) > 0, seen
