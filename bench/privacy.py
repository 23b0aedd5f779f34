"""``python -m bench privacy``: what sealing personal data costs (docs/privacy.md).

The same realistic sessions (`bench.workload`: customers with emails and countries on
``requested`` and ``completed``) are appended and then projected twice, each time into a
scratch stream and database of its own: once in clear (the event store without a sealer),
once sealed (the `Sealer` the composition root gives the store: a data subject per
email, AES-GCM per event, the key store in the scratch database). Then a projector brings
the four read models from empty to the head, without and with the `Opener`. The embedded
nats-server runs with its default fsync policy, as `bench run` does, so the figures show
the CPU and round trips sealing adds, not the disk.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.measure import measure_catch_up
from bench.scratch import Scratch, scratch
from bench.workload import drive, lifecycle, session_ids
from events import CheckoutEvent, EventMetadata
from orchestrator.bootstrap import Endpoints, new_ulid, projector_settings, servers, utc_now
from orchestrator.jetstream.event_store import EventStore
from orchestrator.privacy.keyring import KeyEncryptionKey, Keyring
from orchestrator.privacy.sealing import Opener, Sealer, subject_of
from orchestrator.settings import Settings
from projections import migrate

__all__ = ["PrivacyCost", "measure_privacy"]

_START = utc_now()


@dataclass(frozen=True, slots=True)
class PrivacyCost:
    events: int
    append_clear: float
    append_sealed: float
    catch_up_clear: float
    catch_up_sealed: float
    """events per second, each"""


async def _measure(
    settings: Settings, endpoints: Endpoints, sessions: int, *, sealed: bool
) -> tuple[int, float, float]:
    async with scratch(settings, endpoints) as space:
        await migrate(space.dsn, also=("orchestrator",))
        keyring = Keyring(space.pool, KeyEncryptionKey.parse(_KEK, "bench"))
        await keyring.start()
        store = EventStore(space.nc, space.layout, sealer=Sealer(keyring) if sealed else None)
        try:
            events, append_seconds = await _append_all(store, sessions)
        finally:
            await store.close()
        catch_up = await measure_catch_up(
            nc=space.nc,
            pool=space.pool,
            dsn=space.dsn,
            source=space.source,
            events=events,
            settings=projector_settings(settings),
            personal=Opener(keyring) if sealed else None,
        )
        await _check_sealed(space, sealed=sealed)
        return events, events / append_seconds, catch_up.events_per_second


async def _append_all(store: EventStore, sessions: int) -> tuple[int, float]:
    rng = random.Random(3)  # noqa: S311 - test data, not secrets
    lifecycles = [lifecycle(rng, sid, _START) for sid in session_ids("p_", sessions)]

    async def append(sid: str, events: Sequence[CheckoutEvent], version: int) -> int:
        command = new_ulid()
        metadata = [
            EventMetadata(
                event_id=new_ulid(), command_id=command, correlation_id=command,
                causation_id=command, occurred_at=utc_now(),
            )
            for _ in events
        ]  # fmt: skip
        history = await store.load(sid) if version else None
        subject = subject_of(e.event for e in history.events) if history else None
        result = await store.append(
            sid, events, metadata, expected_version=version, subject=subject
        )
        return result.last_sequence

    started = time.perf_counter()
    await drive(append, lifecycles, concurrency=64)
    return sum(len(e) for e in lifecycles), time.perf_counter() - started


async def _check_sealed(space: Scratch, *, sealed: bool) -> None:
    """The measurement measured what it says: emails in the stream only when clear."""
    js = space.nc.jetstream()
    message = await js.get_msg(space.layout.events_stream, 1)
    clear = b"@example.com" in (message.data or b"")
    if clear == sealed:
        raise AssertionError(f"sealed={sealed} but the first event holds an email: {clear}")


_KEK = "YmVuY2gtb25seSBrZXktZW5jcnlwdGlvbiBrZXkhISE="  # 32 bytes; a scratch database's


async def _both(settings: Settings, sessions: int, repeat: int) -> PrivacyCost:
    """Clear and sealed alternately, ``repeat`` times each; the best of each kind (the
    machine's noise only ever slows a run down)."""
    runs: dict[bool, list[tuple[int, float, float]]] = {False: [], True: []}
    with servers(settings) as endpoints:
        for _ in range(repeat):
            for sealed in (False, True):
                runs[sealed].append(await _measure(settings, endpoints, sessions, sealed=sealed))
    clear, sealed_runs = runs[False], runs[True]
    return PrivacyCost(
        clear[0][0],
        max(r[1] for r in clear),
        max(r[1] for r in sealed_runs),
        max(r[2] for r in clear),
        max(r[2] for r in sealed_runs),
    )


def measure_privacy(settings: Settings, sessions: int, repeat: int = 2) -> PrivacyCost:
    with tempfile.TemporaryDirectory(prefix="checkout-bench-privacy-") as directory:
        settings = settings.model_copy(
            update={"data_dir": Path(directory), "embedded_nats_port": 0,
                    "embedded_postgres_port": 0, "nats_sync_interval": None}
        )  # fmt: skip
        return asyncio.run(_both(settings, sessions, repeat))
