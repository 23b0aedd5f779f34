"""The command worker: takes commands off the durable work queue in batches.

Each command is parsed, handled (`CommandHandler`), answered on its reply inbox, and
only then acknowledged: a crash between the reply and the ack redelivers the
command, which the handler recognises by its id and answers the same way again.
A rejection (bad input, illegal transition) is final and acknowledged; a fault of
our servers is negatively acknowledged and retried later, with a growing delay and
without a limit (the consumer's ``max_deliver`` is unlimited: an outage of the event
store, an election say, must not make the queue give up on a command). Only a bug in
our code is bounded: after ``BUG_ATTEMPTS`` deliveries it is answered ``internal error``.

Batches. The worker pulls what the queue holds (up to ``batch_size``, never more than
``in_flight`` commands unsettled) and, per batch:

- commands that call no provider, of sessions with one command in the batch and no
  earlier command still in hand, go to `CommandHandler.handle_many`: one pipelined round
  of direct gets loads their sessions, each is decided, their appends go out together
  (each with its own OCC expectation), then the replies and acks; this runs in a task
  of its own, and the worker pulls the next batch meanwhile;
- every other command (a create that opens a provider session, an expiry or cancel that
  closes one, several commands of one session, a session still busy from an earlier
  batch) goes to its session's queue: one task per session handles them one after the
  other with `CommandHandler.handle`, behind whatever that session already has in hand,
  while the worker pulls the next batch.

So commands of one session are handled in the order the queue delivered them (a
session in hand, in a batch or its queue, takes its next command only after), and a
slow provider holds only its own session.

FastStream declares the command subscribers for the AsyncAPI document
(`orchestrator.jetstream.asyncapi`); it does not consume them here. Its subscriber runs
per message a parser, a decoder, its logging and telemetry middlewares, a task of its
task group and its ack wrapper (~13% of the worker's CPU in the profile of
docs/performance.md), and its batch mode keeps fetching until a batch is full or its
timeout passes (a fixed wait added to every command of a partly full batch). The loop
here pulls with nats-py (one ``fetch(n)``: it waits for the first command and returns
with what else is there) and continues the caller's trace itself (``traceparent``
header; `CommandHandler` starts the ``checkout.command`` span in it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.client import JetStreamContext

from orchestrator.domain.commands import Command
from orchestrator.errors import CheckoutError, InfrastructureError
from orchestrator.jetstream.streams import StreamLayout
from orchestrator.jetstream.wire import (
    COMMAND_ID,
    REPLY_TO,
    accepted_reply,
    parse_command,
    rejected_reply,
)
from orchestrator.services.handling import Accepted, CommandContext, CommandHandler, Outcome

__all__ = ["DURABLE", "CommandWorker", "consumer_config", "upgrade_consumer"]

_log = logging.getLogger(__name__)

DURABLE = "checkout-orchestrator"
BUG_ATTEMPTS = 5
RETRY_DELAY_SECONDS = 0.5
MAX_RETRY_DELAY_SECONDS = 5.0
DEFAULT_IN_FLIGHT = 256
DEFAULT_BATCH = 256
IDLE_POLL_SECONDS = 1.0  # a waiting pull on an empty queue lasts this long
STOP_SECONDS = 10.0  # on stop, how long commands in hand may take to finish


def consumer_config() -> ConsumerConfig:
    return ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30, max_deliver=-1)


async def upgrade_consumer(nc: NatsClient, layout: StreamLayout) -> bool:
    """Bring a command consumer created by an older version up to this one's delivery
    rules (unlimited redelivery of server faults); the worker creates a missing one.
    Returns whether it changed anything."""
    js = nc.jetstream()
    try:
        info = await js.consumer_info(layout.commands_stream, DURABLE)
    except nats.js.errors.NotFoundError:
        return False
    config = info.config
    if config.max_deliver in (-1, None):
        return False
    _log.warning("command consumer %s: max_deliver %s -> unlimited", DURABLE, config.max_deliver)
    config.max_deliver = -1
    await js.add_consumer(layout.commands_stream, config)
    return True


def _backoff(deliveries: int | None) -> float:
    """0.5 s, 1 s, 2 s, 4 s, then 5 s between deliveries of a command our servers
    could not take."""
    exponent = max(0, (deliveries or 1) - 1)
    return min(MAX_RETRY_DELAY_SECONDS, RETRY_DELAY_SECONDS * (1 << min(exponent, 10)))


@dataclass(frozen=True, slots=True)
class _Parsed:
    msg: Msg
    command: Command
    context: CommandContext


class CommandWorker:
    """Consumes the command queue (durable consumer `DURABLE`) until `stop`.

    ``replies``: the connection replies go out on; ``in_flight``: commands pulled and
    not yet settled, at most; ``batch_size``: commands pulled at once, at most.
    """

    def __init__(
        self,
        nc: NatsClient,
        layout: StreamLayout,
        handler: CommandHandler,
        clock: Callable[[], datetime],
        replies: NatsClient | None = None,
        *,
        in_flight: int = DEFAULT_IN_FLIGHT,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        if in_flight < 1 or batch_size < 1:
            raise ValueError("in_flight and batch_size must be at least 1")
        self._nc = nc
        self._layout = layout
        self._handler = handler
        self._clock = clock
        self._replies = replies or nc
        self._in_flight = in_flight
        self._batch_size = batch_size
        self._prefix = f"{layout.commands_prefix}."
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._loop: asyncio.Task[None] | None = None
        self._fetching = False
        self._stopping = False
        self._unsettled = 0
        self._room = asyncio.Event()
        self._sessions: dict[str, asyncio.Task[None]] = {}  # the last task of each session
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # batches pulled (for tests and the curious)

    async def start(self) -> None:
        js = self._nc.jetstream()
        self._subscription = await js.pull_subscribe(
            f"{self._layout.commands_prefix}.>",
            durable=DURABLE,
            stream=self._layout.commands_stream,
            config=consumer_config(),
        )
        self._loop = asyncio.create_task(self._run(), name="command-worker")

    async def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Stop pulling; let the commands in hand finish (``timeout``), then unsubscribe."""
        self._stopping = True
        if self._loop is not None:
            if self._fetching:
                self._loop.cancel()
            await asyncio.wait([self._loop], timeout=timeout)
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._subscription is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._subscription.unsubscribe()

    # -- pulling -----------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            room = min(self._batch_size, self._in_flight - self._unsettled)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            batch = await self._pull(room)
            if batch:
                self.batches += 1
                self._unsettled += len(batch)
                await self._handle(batch)

    async def _pull(self, room: int) -> list[Msg]:
        """Wait (``IDLE_POLL_SECONDS``) for a command, and take what else is there."""
        assert self._subscription is not None  # noqa: S101 - started
        self._fetching = True
        try:
            # waits for the first command, then returns with what else is there
            # (nats-py's no-wait probe with an expiry: one round trip per batch)
            batch = await self._subscription.fetch(room, timeout=IDLE_POLL_SECONDS)
        except TimeoutError:  # nats-py's own and the builtin one it can raise: an empty poll
            return []
        except nats.errors.Error as exc:  # reconnecting: the commands stay queued
            _log.debug("pulling commands failed: %r", exc)
            await asyncio.sleep(0.1)
            return []
        finally:
            self._fetching = False
        return batch

    # -- handling ----------------------------------------------------------------------

    async def _handle(self, batch: Sequence[Msg]) -> None:
        by_session: dict[str, list[_Parsed]] = {}
        for msg in batch:
            parsed = await self._parsed(msg)
            if parsed is not None:
                by_session.setdefault(parsed.command.session_id, []).append(parsed)
        together: list[_Parsed] = []
        for session_id, commands in by_session.items():
            if (
                len(commands) == 1
                and session_id not in self._sessions
                and self._handler.batchable(commands[0].command)
            ):
                together.extend(commands)
            else:
                self._queue(session_id, commands)
        if together:  # in a task of its own: the next batch is pulled meanwhile
            sessions = [parsed.command.session_id for parsed in together]
            self._track(sessions, asyncio.create_task(self._together(together)))

    async def _together(self, together: list[_Parsed]) -> None:
        outcomes = await self._handler.handle_many([(p.command, p.context) for p in together])
        for parsed, outcome in zip(together, outcomes, strict=True):
            await self._settle(parsed.msg, outcome, parsed.context.command_id)

    async def _parsed(self, msg: Msg) -> _Parsed | None:
        """The command in ``msg``; None when it was settled already (rejected)."""
        headers = msg.headers or {}
        try:
            command, context = parse_command(
                msg.subject.removeprefix(self._prefix), msg.data, headers, self._clock()
            )
        except Exception as exc:  # noqa: BLE001 - settled as the outcome it is
            await self._settle(msg, exc, headers.get(COMMAND_ID))
            return None
        return _Parsed(msg, command, context)

    def _queue(self, session_id: str, commands: list[_Parsed]) -> None:
        """Handle ``commands`` one by one behind what their session already has in hand."""
        before = self._sessions.get(session_id)
        self._track([session_id], asyncio.create_task(self._one_by_one(before, commands)))

    def _track(self, sessions: list[str], task: asyncio.Task[None]) -> None:
        """``task`` now holds ``sessions``: their next commands wait for it."""
        for session_id in sessions:
            self._sessions[session_id] = task
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            for session_id in sessions:
                if self._sessions.get(session_id) is finished:
                    del self._sessions[session_id]

        task.add_done_callback(done)

    async def _one_by_one(self, before: asyncio.Task[None] | None, commands: list[_Parsed]) -> None:
        if before is not None:
            await asyncio.wait([before])
        for parsed in commands:
            outcome: Outcome
            try:
                outcome = await self._handler.handle(parsed.command, parsed.context)
            except Exception as exc:  # noqa: BLE001 - settled as the outcome it is
                outcome = exc
            await self._settle(parsed.msg, outcome, parsed.context.command_id)

    async def _settle(self, msg: Msg, outcome: Outcome, command_id: str | None) -> None:
        """Reply and ack, or nak for a later delivery; the command leaves our hands."""
        try:
            reply = await self._reply_for(msg, outcome, command_id)
            if reply is None:
                return
            if reply_to := (msg.headers or {}).get(REPLY_TO):
                await self._replies.publish(reply_to, reply)
            await msg.ack()
        except nats.errors.Error:  # the connection is gone: the command will be redelivered
            _log.warning("command %s not settled: NATS unavailable", command_id, exc_info=True)
        finally:
            self._unsettled -= 1
            self._room.set()

    async def _reply_for(self, msg: Msg, outcome: Outcome, command_id: str | None) -> bytes | None:
        """The reply to send, or None when the command goes back to the queue (nak)."""
        if isinstance(outcome, Accepted):
            return accepted_reply(command_id or "", outcome)
        if isinstance(outcome, InfrastructureError):
            _log.warning("command %s deferred: servers unavailable", command_id, exc_info=outcome)
            await msg.nak(delay=_backoff(msg.metadata.num_delivered))
            return None
        if isinstance(outcome, CheckoutError):
            _log.info("command %s rejected: %s", command_id, outcome.code)
            return rejected_reply(command_id, outcome)
        # a bug must not stall the queue: logged, retried, then answered
        if msg.metadata.num_delivered < BUG_ATTEMPTS:
            _log.error("command %s failed; will be redelivered", command_id, exc_info=outcome)
            await msg.nak(delay=RETRY_DELAY_SECONDS)
            return None
        _log.error("command %s failed on its last delivery", command_id, exc_info=outcome)
        return rejected_reply(command_id, CheckoutError("internal error"))
