"""Typed async Python client: send commands, read and follow session events.

    async with await CheckoutClient.connect("nats://127.0.0.1:4222") as client:
        reply = await client.create_session(currency="EUR", amount=2500)
        async for recorded in client.events(session_id=reply.session_id, from_sequence=1):
            print(recorded.sequence, recorded.event.type)

`send` waits for the orchestrator's reply. The command itself is durable as soon as
JetStream acknowledged it: if no reply comes in time, `CommandPending` is raised and
sending the same ``command_id`` again later is safe (it is answered, never re-applied).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerConfig, DeliverPolicy
from opentelemetry import propagate
from pydantic_core import to_json
from ulid import ULID

from events.codec import decode
from events.envelope import RecordedEvent
from events.subjects import partition_of, session_filter
from orchestrator.errors import CheckoutError, StoreUnavailable
from orchestrator.jetstream.connection import ANONYMOUS, NatsOptions
from orchestrator.jetstream.connection import connect as nats_connect
from orchestrator.jetstream.event_store import EventStore
from orchestrator.jetstream.streams import StreamLayout
from orchestrator.jetstream.wire import (
    COMMAND_ID,
    CORRELATION_ID,
    REPLY_TO,
    AcceptedReply,
    RejectedReply,
    parse_reply,
)
from orchestrator.privacy.forgetting import ForgetResult

__all__ = ["CheckoutClient", "CommandPending", "CommandRejected", "nats_servers"]


def nats_servers(url: str) -> list[str]:
    """``NATS_URL`` may list a cluster's servers, comma-separated."""
    return [server.strip() for server in url.split(",") if server.strip()]


class PersonalData(Protocol):
    async def open(self, events: Sequence[RecordedEvent]) -> list[RecordedEvent]: ...


class CommandRejected(CheckoutError):
    """The orchestrator refused the command; ``code`` is the reply's (stable, see the README)."""

    code = "command_rejected"

    def __init__(self, reply: RejectedReply) -> None:
        super().__init__(f"{reply.code}: {reply.error.get('message', '')}")
        self.code = reply.code
        self.error = reply.error
        self.command_id = reply.command_id


class CommandPending(CheckoutError):
    """JetStream holds the command, but no reply arrived in time (orchestrator down?)."""

    code = "command_pending"

    def __init__(self, command_id: str) -> None:
        super().__init__(f"command {command_id} is queued; no reply yet", command_id=command_id)
        self.command_id = command_id


class CheckoutClient:
    def __init__(
        self,
        nc: NatsClient,
        layout: StreamLayout | None = None,
        *,
        personal: PersonalData | None = None,
    ) -> None:
        """``personal`` (`orchestrator.privacy.sealing.Opener`, which needs the key store)
        opens the sealed customers of the events read; without it they stay sealed."""
        self._nc = nc
        self._layout = layout or StreamLayout()
        self._js = nc.jetstream()
        self._store = EventStore(nc, self._layout)
        self._personal = personal

    @classmethod
    async def connect(
        cls, url: str, layout: StreamLayout | None = None, *, options: NatsOptions = ANONYMOUS
    ) -> Self:
        """``options``: credentials and TLS, ``nats_options(Settings())`` in an application."""
        return cls(
            await nats_connect(nats_servers(url), name="checkout-client", options=options), layout
        )

    async def close(self) -> None:
        await self._store.close()
        await self._nc.drain()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- commands --------------------------------------------------------------

    async def send(
        self,
        command_type: str,
        payload: Mapping[str, Any],
        *,
        command_id: str | None = None,
        correlation_id: str | None = None,
        timeout: float = 10.0,
    ) -> AcceptedReply:
        """Publish one command durably and wait for its reply."""
        command_id = command_id or str(ULID())
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox, max_msgs=1)
        try:
            headers = {
                COMMAND_ID: command_id,
                CORRELATION_ID: correlation_id or command_id,
                REPLY_TO: inbox,
            }
            propagate.inject(headers)  # traceparent: the command joins the caller's trace
            await self._js.publish(
                f"{self._layout.commands_prefix}.{command_type}",
                _json(payload),
                headers=headers,
                timeout=timeout,
            )
            try:
                msg = await sub.next_msg(timeout=timeout)
            except nats.errors.TimeoutError:
                raise CommandPending(command_id) from None
        finally:
            await sub.unsubscribe()
        reply = parse_reply(msg.data)
        if isinstance(reply, RejectedReply):
            raise CommandRejected(reply)
        return reply

    async def create_session(
        self,
        *,
        currency: str,
        amount: int | None = None,
        session_id: str | None = None,
        command_id: str | None = None,
        timeout: float = 10.0,
        **fields: Any,
    ) -> AcceptedReply:
        """Create a checkout session. ``fields`` are the other fields of the create
        command (mode, line_items, customer, urls, metadata, ...)."""
        payload = {"currency": currency, "amount": amount, **fields}
        payload["session_id"] = session_id or f"cs_{ULID()}"
        return await self.send("create", payload, command_id=command_id, timeout=timeout)

    async def expire(self, session_id: str, **fields: Any) -> AcceptedReply:
        return await self.send("expire", {"session_id": session_id, **fields})

    async def cancel(self, session_id: str, reason: str | None = None) -> AcceptedReply:
        return await self.send("cancel", {"session_id": session_id, "reason": reason})

    # -- forgetting a customer (docs/privacy.md) ----------------------------------

    async def forget(self, payload: Mapping[str, Any], *, request_id: str | None = None,
                     timeout: float = 30.0) -> ForgetResult:  # fmt: skip
        """The ``forget_customer`` command (``{"email": ...}`` or
        ``{"customer_reference": ...}``); `CommandRejected` when it is refused."""
        request_id = request_id or str(ULID())
        try:
            msg = await self._nc.request(
                self._layout.forget_subject,
                _json(payload),
                timeout=timeout,
                headers={COMMAND_ID: request_id},
            )
        except nats.errors.NoRespondersError:
            raise StoreUnavailable(
                "no forget_customer service answers (no commands role?)"
            ) from None
        except nats.errors.TimeoutError:
            raise CommandPending(request_id) from None  # it may still finish: repeat it
        reply = json.loads(msg.data)
        if reply.get("status") == "rejected":
            raise CommandRejected(RejectedReply.model_validate(reply))
        return ForgetResult.model_validate(reply)

    async def forget_customer(
        self, *, email: str | None = None, customer_reference: str | None = None
    ) -> ForgetResult:
        """Forget a customer by email or by the merchant's reference (docs/privacy.md)."""
        payload = {"email": email, "customer_reference": customer_reference}
        return await self.forget({k: v for k, v in payload.items() if v is not None})

    # -- events ----------------------------------------------------------------

    async def history(self, session_id: str) -> tuple[RecordedEvent, ...]:
        """Every stored event of one session, in order (personal data opened, if the
        client can)."""
        events = (await self._store.load(session_id)).events
        if self._personal is not None:
            return tuple(await self._personal.open(events))
        return events

    async def events(
        self,
        *,
        session_id: str | None = None,
        event_type: str | None = None,
        from_sequence: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        """Follow events as they are appended (an ordered consumer, nothing durable).

        Without ``from_sequence`` only new events arrive; ``from_sequence=1`` replays
        everything that matches first.
        """
        config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
        if from_sequence is not None:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=from_sequence
            )
        sub = await self._js.subscribe(
            self._filter(session_id, event_type), ordered_consumer=True, config=config
        )
        try:
            async for msg in sub.messages:
                stream_sequence = msg.metadata.sequence.stream
                recorded = decode(msg.subject, msg.data, msg.headers or {}, stream_sequence)
                if self._personal is not None:
                    (recorded,) = await self._personal.open([recorded])
                yield recorded
        finally:
            await sub.unsubscribe()

    def _filter(self, session_id: str | None, event_type: str | None) -> str:
        prefix, partitions = self._layout.events_prefix, self._layout.partitions
        if session_id is None:
            return f"{prefix}.*.*.{event_type}" if event_type else f"{prefix}.>"
        if event_type is None:
            return session_filter(prefix, session_id, partitions)
        return f"{prefix}.{partition_of(session_id, partitions)}.{session_id}.{event_type}"


def _json(payload: Mapping[str, Any]) -> bytes:
    return to_json(dict(payload))
