"""Shared by the infrastructure fault cases: a steady command load, the ledger of what was
acknowledged, and the checks of the stream and the provider simulators against it.

`SteadyLoad` sends ``create`` commands at a fixed rate through the real `CheckoutClient`.
Each command has its own id and session id; a client-side failure (no reply in time, a
lost connection, no JetStream answer) is retried with the *same* command id and body until
accepted, backing off from 0.2 s to 2 s as a careful caller would (without the backoff,
re-sent copies pile up in the work queue faster than a loaded machine works them off).
The `Ledger` keeps the first accepted reply of every command. `check_commands_in_stream`
then proves that every accepted command is in the event stream exactly once, and
`provider_sessions_per_session` counts, at the simulators, the provider sessions opened
for each of our sessions. The cluster helpers wait for a new or wounded JetStream
cluster to settle.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import ClusterInfo
from ulid import ULID

from orchestrator.client import CheckoutClient, CommandPending, CommandRejected
from orchestrator.errors import InfrastructureError
from orchestrator.jetstream.streams import StreamLayout, ensure_streams
from orchestrator.jetstream.wire import COMMAND_ID, AcceptedReply
from orchestrator.sandbox.fleet import SandboxFleet
from projections.decoding import ProviderCallFailed
from projections.source import EventSource, StreamMessage, read_all
from tests.support.builders import create_payload
from tests.support.waiting import WaitTimeout, wait_until

CREATED_TYPES = ["requested", "routed", "provider_session_opened"]


@dataclass(frozen=True, slots=True)
class Accepted:
    reply: AcceptedReply
    first_sent: float  # monotonic time of the command's first try
    attempt_sent: float  # ... of the try that was answered
    answered: float
    tries: int


@dataclass
class Ledger:
    """What the client knows: the accepted commands, and what it took to get there."""

    accepted: dict[str, Accepted] = field(default_factory=dict)
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)  # command id -> code
    given_up: list[str] = field(default_factory=list)
    failed_tries: Counter[str] = field(default_factory=Counter)  # by exception class

    @property
    def retried_commands(self) -> int:
        return sum(1 for a in self.accepted.values() if a.tries > 1)

    @property
    def duplicates(self) -> int:
        return sum(1 for a in self.accepted.values() if a.reply.duplicate)

    def first_accepted_sent_after(self, instant: float) -> Accepted | None:
        """The earliest answer to a try that was sent after ``instant``."""
        later = [a for a in self.accepted.values() if a.attempt_sent > instant]
        return min(later, key=lambda a: a.answered, default=None)

    def latencies(self) -> list[float]:
        return sorted(a.answered - a.first_sent for a in self.accepted.values())


class SteadyLoad:
    """``rate`` create commands per second, each retried with its own id until accepted."""

    def __init__(
        self,
        client: CheckoutClient,
        *,
        rate: float,
        reply_timeout: float = 2.0,
        retry_for: float = 60.0,
        payload: Callable[[int], dict[str, Any]] = create_payload,
    ) -> None:
        self.client = client
        self.rate = rate
        self.reply_timeout = reply_timeout
        self.retry_for = retry_for
        self.payload = payload
        self.ledger = Ledger()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self.sent = 0

    async def __aenter__(self) -> Self:
        self._ticker = asyncio.create_task(self._tick(), name="steady-load")
        return self

    def figures(self) -> dict[str, Any]:
        """What the load did, for :func:`report`."""
        ledger = self.ledger
        return {
            "commands_sent": self.sent,
            "accepted": len(ledger.accepted),
            "rejected": len(ledger.rejected),
            "given_up": len(ledger.given_up),
            "commands_retried_by_the_client": ledger.retried_commands,
            "failed_tries": dict(ledger.failed_tries),
            "answered_as_duplicate": ledger.duplicates,
        }

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def stop(self, drain_timeout: float = 90.0) -> None:
        """Stop sending new commands; wait until every command sent is answered or given up."""
        self._stop.set()
        if self._ticker is not None:
            await self._ticker
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=drain_timeout)
            for task in pending:
                task.cancel()
            for task in done:
                task.result()
            assert not pending, f"{len(pending)} commands still unanswered after the load"

    async def wait_accepted(self, count: int, timeout: float = 30.0) -> None:
        await wait_until(
            lambda: len(self.ledger.accepted) >= count,
            timeout,
            what=f"{count} accepted commands",
            interval=0.02,
        )

    async def wait_accepted_after(self, instant: float, timeout: float) -> Accepted:
        return await wait_until(
            lambda: self.ledger.first_accepted_sent_after(instant),
            timeout,
            what="a command sent after the fault to be accepted",
            interval=0.02,
        )

    async def _tick(self) -> None:
        interval = 1.0 / self.rate
        start = time.monotonic()
        for index in itertools.count():
            if self._stop.is_set():
                return
            task = asyncio.create_task(self._one(index))
            self._tasks.add(task)
            self.sent += 1
            with contextlib.suppress(TimeoutError):
                delay = start + (index + 1) * interval - time.monotonic()
                await asyncio.wait_for(self._stop.wait(), max(0.0, delay))

    async def _one(self, index: int) -> None:
        command_id = f"cmd-{ULID()}"
        body = self.payload(index)
        self.ledger.payloads[command_id] = body
        first = time.monotonic()
        for tries in itertools.count(1):
            sent = time.monotonic()
            try:
                reply = await self.client.send(
                    "create", body, command_id=command_id, timeout=self.reply_timeout
                )
            except CommandRejected as exc:
                self.ledger.rejected[command_id] = exc.code
                return
            except (CommandPending, nats.errors.Error, OSError, TimeoutError) as exc:
                self.ledger.failed_tries[type(exc).__name__] += 1
                if time.monotonic() - first > self.retry_for:
                    self.ledger.given_up.append(command_id)
                    return
                await asyncio.sleep(min(0.2 * 2 ** (tries - 1), 2.0))  # back off: no retry storm
                continue
            self.ledger.accepted[command_id] = Accepted(reply, first, sent, time.monotonic(), tries)
            return


@dataclass(frozen=True, slots=True)
class StreamCheck:
    events: int
    sessions: int
    foreign: list[str]  # command ids in the stream that no accepted reply names
    problems: list[str]


def check_commands_in_stream(ledger: Ledger, messages: Sequence[StreamMessage]) -> StreamCheck:
    """Every accepted command is in the stream exactly once: its session holds exactly the
    events of one creation, all carrying that command id, the last at the replied sequence;
    and the stream holds nothing else."""
    by_session: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    undecodable = [m.sequence for m in messages if m.event is None]
    for message in messages:
        if (recorded := message.event) is not None:
            by_session[recorded.session_id].append(
                (recorded.sequence, recorded.event.type, recorded.metadata.command_id)
            )
    # why a provider call failed, so that a fallback under a fault says what it fell back from
    failed_calls: dict[str, list[str]] = defaultdict(list)
    for message in messages:
        event = message.event.event if message.event is not None else None
        if isinstance(event, ProviderCallFailed):
            failed_calls[event.session_id].append(
                f"{event.provider.value} {event.error_code}: {event.message}"
            )
    problems = [f"undecodable messages at {undecodable}"] if undecodable else []
    ours = set()
    for command_id, accepted in ledger.accepted.items():
        reply = accepted.reply
        ours.add(command_id)
        stored = sorted(by_session.get(reply.session_id, []))
        types = [event_type for _, event_type, _ in stored]
        commands = {stored_command for _, _, stored_command in stored}
        if types != CREATED_TYPES or commands != {command_id}:
            failures = failed_calls.get(reply.session_id, [])
            problems.append(
                f"{command_id} ({reply.session_id}): {types} by {sorted(commands)}"
                + (f"; failed calls: {failures}" if failures else "")
            )
        elif stored[-1][0] != reply.sequence:
            problems.append(f"{command_id}: replied {reply.sequence}, stored at {stored[-1][0]}")
    foreign = sorted({command for events in by_session.values() for _, _, command in events} - ours)
    return StreamCheck(len(messages), len(by_session), foreign, problems)


def provider_sessions_per_session(fleet: SandboxFleet) -> Counter[str]:
    """How many provider sessions each of our sessions has, counted at the simulators."""
    objects: list[dict[str, Any]] = [
        *fleet.stripe.sessions.values(),
        *fleet.lomi.sessions.values(),
        *fleet.polar.checkouts.values(),
    ]
    return Counter(str(o.get("metadata", {}).get("orchestrator_session_id")) for o in objects)


def check_provider_sessions(fleet: SandboxFleet, ledger: Ledger) -> tuple[int, list[str]]:
    """(provider sessions counted, problems): each accepted session opened exactly once, at
    the provider session its reply named."""
    counts = provider_sessions_per_session(fleet)
    problems = [f"{sid}: {n} provider sessions" for sid, n in counts.items() if n != 1]
    for accepted in ledger.accepted.values():
        reply = accepted.reply
        if counts.get(reply.session_id, 0) == 0:
            problems.append(f"{reply.session_id}: none at the simulator")
        simulator = fleet.lomi if reply.provider == "lomi" else fleet.stripe
        known = simulator.sessions
        if reply.provider_session_id not in known:
            problems.append(f"{reply.session_id}: {reply.provider_session_id} unknown")
    return sum(counts.values()), problems


async def read_stream(
    nc: NatsClient, source: EventSource, timeout: float = 30.0
) -> list[StreamMessage]:
    """Every message of the stream, retried while a cluster is still settling after a fault
    (``JetStream system temporarily unavailable``, a request that timed out)."""

    async def whole() -> tuple[list[StreamMessage]]:
        return (await read_all(nc, source),)  # truthy even when the stream is empty

    (messages,) = await wait_until(
        whole,
        timeout,
        what=f"a whole read of {source.stream}",
        interval=0.2,
        ignoring=(nats.errors.Error, TimeoutError),
    )
    return messages


async def commands_left(nc: NatsClient, stream: str, timeout: float = 15.0) -> int:
    """Messages left in the command work queue (each is removed when acknowledged) once it
    has drained, or after ``timeout`` (-1: the cluster never answered)."""
    left = -1

    async def drained() -> bool:
        nonlocal left
        try:
            left = int((await nc.jetstream().stream_info(stream)).state.messages)
        except (nats.errors.Error, TimeoutError):
            left = -1  # the cluster is still settling
        return left == 0

    with contextlib.suppress(WaitTimeout):
        await wait_until(drained, timeout, what=f"{stream} to drain", interval=0.1)
    return left


async def work_queue_state(nc: NatsClient, stream: str, durable: str) -> dict[str, int]:
    """The command work queue and its consumer: what is left and why."""
    js = nc.jetstream()
    info = await js.consumer_info(stream, durable)
    return {
        "messages": int((await js.stream_info(stream)).state.messages),
        "num_pending": int(info.num_pending or 0),
        "num_ack_pending": int(info.num_ack_pending or 0),
        "num_redelivered": int(info.num_redelivered or 0),
        "max_deliver": int(info.config.max_deliver or 0),
    }


async def leftover_command_ids(nc: NatsClient, stream: str) -> list[str]:
    """The command ids of the messages still in the command work queue."""
    js = nc.jetstream()
    state = (await js.stream_info(stream)).state
    found: list[str] = []
    for sequence in range(state.first_seq, state.last_seq + 1):
        try:
            message = await js.get_msg(stream, sequence)
        except nats.js.errors.NotFoundError:
            continue  # acknowledged, hence removed
        found.append((message.headers or {}).get(COMMAND_ID, "?"))
    return found


# --- a JetStream cluster (EmbeddedNatsCluster) -----------------------------------------------

_NO_PEERS_FOR_PLACEMENT = 10005  # JetStream error: a cluster member is not known online yet


async def ensure_streams_on_new_cluster(
    nc: NatsClient, layout: StreamLayout, timeout: float = 20.0
) -> None:
    """`ensure_streams` on a cluster that just started: retried while JetStream elects its
    meta leader or does not yet know every peer online (R3 placement needs all three)."""

    async def created() -> bool:
        try:
            await ensure_streams(nc, layout)
        except InfrastructureError:  # UnsupportedServer: "JetStream is not available"
            return False
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != _NO_PEERS_FOR_PLACEMENT:
                raise
            return False
        return True

    await wait_until(created, timeout, what="the streams on the new cluster", interval=0.2)


async def _cluster_info(nc: NatsClient, stream: str) -> ClusterInfo | None:
    try:
        info = await nc.jetstream().stream_info(stream)
    except (nats.errors.Error, TimeoutError):
        return None  # no leader yet, or the connection is moving to another server
    return info.cluster if info.cluster is not None and info.cluster.leader else None


async def stream_leader(nc: NatsClient, stream: str, timeout: float = 20.0) -> str:
    """The name of the server leading ``stream``, once it has one."""

    async def leader() -> str | None:
        cluster = await _cluster_info(nc, stream)
        return cluster.leader if cluster is not None else None

    return await wait_until(leader, timeout, what=f"a leader of {stream}", interval=0.1)


async def all_replicas_current(nc: NatsClient, stream: str, timeout: float = 20.0) -> None:
    """Wait until ``stream`` has a leader and both other replicas are online and current."""

    async def current() -> bool:
        cluster = await _cluster_info(nc, stream)
        replicas = (cluster.replicas or []) if cluster is not None else []
        return len(replicas) == 2 and all(r.current and not r.offline for r in replicas)

    await wait_until(current, timeout, what=f"every replica of {stream} current", interval=0.1)
