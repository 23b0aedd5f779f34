"""nats-server SIGKILLed under a steady command load, restarted on the same file store.

The real command service (FastStream subscriber, create flow, event store) runs with the
four provider simulators at zero latency. A client sends ``create`` commands at a steady
rate and retries each one with the same command id until it is accepted. Mid-load the
server (file storage, ``sync_interval: always`` as `up` runs it) is killed with SIGKILL,
left down for a moment, and started again on the same port and store.

Then: every accepted command's events are in the stream, exactly once, at the sequence
its reply named, and the stream holds nothing else; every session has exactly one
provider session at the simulators (a retried or redelivered create reuses it through
the provider's idempotency key); the command work queue is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import nats
import pytest

from orchestrator.bootstrap import orchestrator
from orchestrator.client import CheckoutClient, CommandPending
from orchestrator.embedded import EmbeddedNats
from orchestrator.jetstream.command_service import DURABLE
from orchestrator.sandbox.fleet import SandboxFleet
from projections.source import EventSource
from tests.support.apps import settings_for
from tests.support.builders import create_payload
from tests.support.infra import (
    SteadyLoad,
    check_commands_in_stream,
    check_provider_sessions,
    commands_left,
    read_stream,
    work_queue_state,
)
from tests.support.reports import percentile, report
from tests.support.waiting import WaitTimeout, wait_until

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(180)]

RATE = 15.0  # commands per second
DOWN_FOR = 3.0  # seconds between the kill and the restart
RECOVER_WITHIN = 15.0  # seconds from the restart to a command accepted again


@pytest.fixture
def durable_nats(tmp_path_factory: pytest.TempPathFactory):
    """A private server with the file store fsynced on every write, as `up` runs it."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats-fault"), sync_interval="always")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_nats_sigkill_under_command_load_loses_and_doubles_nothing(
    durable_nats, stream_names
):
    settings = settings_for(stream_names, store_timeout_seconds=2.0)
    layout = settings.layout()
    url = durable_nats.url
    async with SandboxFleet() as fleet, orchestrator(settings, url, providers=fleet.providers):
        nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        client = CheckoutClient(nc, layout)
        try:
            async with SteadyLoad(client, rate=RATE, reply_timeout=1.5) as load:
                await load.wait_accepted(45)
                accepted_before = len(load.ledger.accepted)
                killed_at = time.monotonic()
                durable_nats.kill()
                await asyncio.sleep(DOWN_FOR)  # the fault itself: the server down for DOWN_FOR s
                await asyncio.to_thread(durable_nats.start)  # same port, same store
                restarted_at = time.monotonic()
                try:
                    recovered = await load.wait_accepted_after(restarted_at, RECOVER_WITHIN + 5)
                except TimeoutError:
                    log = durable_nats.log_path.read_text(errors="replace")[-4000:]
                    raise AssertionError(f"no command accepted after the restart\n{log}") from None
                await load.wait_accepted(len(load.ledger.accepted) + 45, timeout=60)
            ledger = load.ledger
            source = EventSource(layout.events_stream, layout.events_prefix, layout.partitions)
            messages = await read_stream(nc, source)
            stream_check = check_commands_in_stream(ledger, messages)
            provider_sessions, provider_problems = check_provider_sessions(fleet, ledger)
            queued = await commands_left(nc, layout.commands_stream)
            replays = fleet.stripe.counters["idempotent_replays"]
        finally:
            await client.close()

    latencies = ledger.latencies()
    recover_seconds = recovered.answered - restarted_at
    report(
        "nats-server SIGKILL under command load (file store, sync_interval always)",
        injected=f"SIGKILL after {accepted_before} accepted commands; down {DOWN_FOR:.1f} s; "
        f"restarted on the same store ({restarted_at - killed_at:.2f} s after the kill)",
        **load.figures(),
        first_accepted_after_restart_s=recover_seconds,
        command_latency_p50_p99_max_s=f"{percentile(latencies, 0.5):.3f} / "
        f"{percentile(latencies, 0.99):.3f} / {latencies[-1]:.3f}",
        events_in_stream=stream_check.events,
        sessions_in_stream=stream_check.sessions,
        provider_sessions_at_simulators=provider_sessions,
        stripe_idempotent_replays=replays,
        commands_left_in_work_queue=queued,
        problems=len(stream_check.problems) + len(provider_problems),
    )
    assert not ledger.rejected, ledger.rejected
    assert not ledger.given_up, ledger.given_up
    assert recover_seconds < RECOVER_WITHIN
    assert stream_check.problems == []
    assert stream_check.foreign == []
    assert stream_check.events == 3 * len(ledger.accepted)
    assert provider_problems == []
    assert provider_sessions == len(ledger.accepted)
    assert queued == 0


OUTAGE = 8.0  # seconds the event stream refuses appends


async def test_a_command_queued_during_an_event_stream_outage_is_handled_after_it(
    nats_url, stream_names
):
    """The command queue is durable so that a command outlives an outage of the event
    store; here the event stream refuses appends (its message limit reached: what the
    handler sees during a cluster's leader election) while the command queue still works,
    and each command is sent once, with no client retry."""
    settings = settings_for(stream_names)
    layout = settings.layout()
    async with SandboxFleet() as fleet, orchestrator(settings, nats_url, providers=fleet.providers):
        nc = await nats.connect(nats_url)
        client = CheckoutClient(nc, layout)
        try:
            await client.send("create", create_payload(0))
            js = nc.jetstream()
            info = await js.stream_info(layout.events_stream)
            config = info.config
            config.max_msgs = info.state.messages  # no room for one more event
            await js.update_stream(config)
            sent = [create_payload(index) for index in range(1, 6)]
            for body in sent:
                with contextlib.suppress(CommandPending):  # queued durably, no reply yet
                    await client.send("create", body, timeout=0.2)
            await asyncio.sleep(OUTAGE)  # the fault itself: appends refused for OUTAGE s
            config.max_msgs = -1
            await js.update_stream(config)
            restored_at = time.monotonic()
            handled = await _sessions_created(client, [b["session_id"] for b in sent], 8.0)
            queue = await work_queue_state(nc, layout.commands_stream, DURABLE)
        finally:
            await client.close()
    report(
        "the event stream refuses appends while commands are queued (no client retry)",
        injected=f"{len(sent)} create commands sent once during an {OUTAGE:.0f} s outage",
        handled_within_8_s_after_the_outage=f"{len(handled)} of {len(sent)}",
        waited_s=time.monotonic() - restored_at,
        work_queue=queue,
    )
    assert len(handled) == len(sent)


async def _sessions_created(client, session_ids, timeout: float) -> set[str]:
    """The sessions among ``session_ids`` created within ``timeout`` (all, or those so far)."""
    handled: set[str] = set()

    async def all_created() -> bool:
        for sid in set(session_ids) - handled:
            if len(await client.history(sid)) == 3:
                handled.add(sid)
        return len(handled) == len(session_ids)

    with contextlib.suppress(WaitTimeout):
        await wait_until(all_created, timeout, what="every queued create handled", interval=0.2)
    return handled
