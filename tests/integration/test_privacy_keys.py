"""The key store, the KEK settings, rotation, and sealing a stream of older clear events,
against the suite's real Postgres and NATS (docs/privacy.md)."""

from __future__ import annotations

import asyncio
import base64
import stat
from datetime import timedelta

import nats
import pytest
from pydantic import ValidationError

from events.catalog import CheckoutCompleted, CheckoutRequested
from events.privacy import ErasedCustomer, SealedCustomer
from events.values import Address, Customer, PaymentStatus
from orchestrator.bootstrap import Endpoints, key_encryption_key, orchestrator, privacy
from orchestrator.client import CheckoutClient
from orchestrator.jetstream.event_store import EventStore
from orchestrator.jetstream.streams import StreamLayout, ensure_streams
from orchestrator.privacy.forgetting import ForgetCustomer, Forgetter
from orchestrator.privacy.keyring import KeyEncryptionKey, KeyEncryptionKeyError
from orchestrator.privacy.migration import StreamCopyError, seal_stream
from orchestrator.privacy.sealing import Sealer
from orchestrator.settings import Settings
from tests.support.apps import settings_for
from tests.support.builders import T0, layout_for, metadata, new_session_id, requested
from tests.support.capture import stored_messages
from tests.support.waiting import wait_until

KEK_A = base64.b64encode(b"A" * 32).decode()
KEK_B = base64.b64encode(b"B" * 32).decode()
CAROL = Customer(
    email="carol.sealed@example.test",
    name="Carol Sealed",
    country="FR",
    address=Address(line1="9 Quai des Brumes", city="Lyon", country="FR"),
)


def _endpoints(database_url: str, *, embedded: bool = False) -> Endpoints:
    return Endpoints("nats://unused:4222", database_url, False, embedded)


@pytest.fixture
def no_kek_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHECKOUT_PRIVACY_KEK", raising=False)
    monkeypatch.delenv("CHECKOUT_PRIVACY_KEK_FILE", raising=False)


def test_a_configured_database_without_a_kek_refuses_to_start(no_kek_in_env):
    with pytest.raises(KeyEncryptionKeyError, match="CHECKOUT_PRIVACY_KEK_FILE") as raised:
        key_encryption_key(Settings(), _endpoints("postgresql://db/x"))
    assert raised.value.code == "invalid_key_encryption_key"


@pytest.mark.parametrize(
    ("value", "problem"),
    [("not base64 at all!", "is not base64"), (base64.b64encode(b"short").decode(), "32 bytes")],
)
def test_a_malformed_kek_is_named_never_shown(no_kek_in_env, value, problem):
    settings = Settings(privacy_kek=value)
    with pytest.raises(KeyEncryptionKeyError, match=problem) as raised:
        key_encryption_key(settings, _endpoints("postgresql://db/x"))
    assert "CHECKOUT_PRIVACY_KEK" in raised.value.message
    assert value not in raised.value.message
    assert value not in repr(settings)


def test_both_kek_settings_at_once_are_refused(no_kek_in_env, tmp_path):
    with pytest.raises(ValidationError, match="not both") as raised:
        Settings(privacy_kek=KEK_A, privacy_kek_file=tmp_path / "kek")
    assert KEK_A not in str(raised.value)


def test_the_embedded_database_gets_a_generated_kek_kept_in_the_data_dir(no_kek_in_env, tmp_path):
    settings = Settings(data_dir=tmp_path)
    first = key_encryption_key(settings, _endpoints("postgresql://db/x", embedded=True))
    path = settings.generated_kek_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = key_encryption_key(settings, _endpoints("postgresql://db/x", embedded=True))
    assert again.secret == first.secret  # the same one on the next start


async def test_a_wrong_kek_refuses_to_start_naming_the_setting(no_kek_in_env, database_url):
    async with privacy(Settings(privacy_kek=KEK_A), _endpoints(database_url)):
        pass
    with pytest.raises(KeyEncryptionKeyError, match="CHECKOUT_PRIVACY_KEK does not open") as raised:
        async with privacy(Settings(privacy_kek=KEK_B), _endpoints(database_url)):
            pass
    assert KEK_B not in raised.value.message


async def test_rotation_rewraps_every_key_and_retires_the_old_kek(no_kek_in_env, database_url):
    session_id = new_session_id()
    async with privacy(Settings(privacy_kek=KEK_A), _endpoints(database_url)) as personal:
        (sealed,) = await personal.sealer.seal(
            session_id, [requested(session_id, customer=CAROL)], None
        )
        assert isinstance(sealed, CheckoutRequested)
        assert isinstance(sealed.customer, SealedCustomer)
        assert await personal.keyring.rotate(KeyEncryptionKey.parse(KEK_B, "new")) == 1
    with pytest.raises(KeyEncryptionKeyError):
        async with privacy(Settings(privacy_kek=KEK_A), _endpoints(database_url)):
            pass
    async with privacy(Settings(privacy_kek=KEK_B), _endpoints(database_url)) as personal:
        recorded = _recorded(sealed)
        (opened,) = await personal.opener.open([recorded])
        assert isinstance(opened.event, CheckoutRequested)
        assert opened.event.customer == CAROL


def _recorded(event):
    from events.envelope import RecordedEvent

    return RecordedEvent(event=event, metadata=metadata()[0], sequence=1, subject="s")


async def test_sealing_keeps_the_routing_country_and_personal_metadata_apart(database_url):
    session_id = new_session_id()
    customer = Customer(email="dan@example.test", address=Address(country="SN"))
    event = requested(session_id, customer=customer, metadata={"loyalty": "L-1", "order": "7"})
    settings = Settings(personal_metadata_keys=("loyalty",))
    async with privacy(settings, _endpoints(database_url)) as personal:
        (sealed,) = await personal.sealer.seal(session_id, [event], None)
        assert isinstance(sealed, CheckoutRequested)
        assert isinstance(sealed.customer, SealedCustomer)
        assert (sealed.customer.country, sealed.customer.metadata_keys) == ("SN", ("loyalty",))
        assert sealed.metadata == {"order": "7"}
        (opened,) = await personal.opener.open([_recorded(sealed)])
        assert opened.event.metadata == {"loyalty": "L-1", "order": "7"}
        # nothing personal: nothing sealed, no subject made
        bare = requested(new_session_id(), customer=Customer(country="GB"))
        assert await personal.sealer.seal(bare.session_id, [bare], None) == [bare]


async def test_a_stream_of_clear_events_is_copied_sealed_and_can_then_be_forgotten(
    database_url, nats_url, stream_names
):
    nc = await nats.connect(nats_url)
    source = layout_for(stream_names)
    target = StreamLayout(
        events_stream=f"{source.events_stream}_SEALED",
        events_prefix=f"{source.events_prefix}-sealed",
        commands_stream=source.commands_stream,
        commands_prefix=source.commands_prefix,
    )
    await ensure_streams(nc, source)
    clear_store = EventStore(nc, source)  # as the store wrote before sealing existed
    sessions = [new_session_id(), new_session_id()]
    for session_id in sessions:
        await clear_store.append(
            session_id, [requested(session_id, customer=CAROL)], metadata(), expected_version=0
        )
    completed = CheckoutCompleted(
        session_id=sessions[0],
        occurred_at=T0 + timedelta(seconds=5),
        payment_status=PaymentStatus.PAID,
        customer=Customer(email=CAROL.email, name="Carol S."),
    )
    history = await clear_store.load(sessions[0])
    await clear_store.append(sessions[0], [completed], metadata(), expected_version=history.version)
    assert any(CAROL.email in m for m in await stored_messages(nats_url, source.events_stream))
    try:
        async with privacy(Settings(), _endpoints(database_url)) as personal:
            with pytest.raises(StreamCopyError):
                await seal_stream(nc, source, source, personal.sealer)
            report = await seal_stream(nc, source, target, personal.sealer)
            assert (report.copied, report.sealed, report.skipped) == (3, 3, 0)
            again = await seal_stream(nc, source, target, personal.sealer)
            assert (again.copied, again.skipped) == (0, 3)  # resumable: nothing twice
            copies = await stored_messages(nats_url, target.events_stream)
            assert len(copies) == 3
            assert not any("carol" in m.lower() or "Brumes" in m for m in copies)

            sealed_store = EventStore(nc, target, sealer=personal.sealer)
            first = (await sealed_store.load(sessions[0])).events
            subjects = {e.event.subject for e in first}
            assert len(subjects) == 1  # one data subject per session, completion included
            opened = await personal.opener.open(first)
            assert opened[0].event.customer == CAROL
            assert opened[1].event.customer.name == "Carol S."
            assert [e.metadata for e in opened] == [e.metadata for e in first]

            forgetter = Forgetter(
                personal.keyring, sealed_store, clock=lambda: T0, new_id=lambda: "e1"
            )
            result = await forgetter.forget(ForgetCustomer(email=CAROL.email), "forget-1")
            assert sorted(result.sessions) == sorted(sessions)
            for session_id in sessions:
                events = await personal.opener.open((await sealed_store.load(session_id)).events)
                assert isinstance(events[0].event.customer, ErasedCustomer)
            await sealed_store.close()
    finally:
        await clear_store.close()
        await nc.close()


async def test_a_forget_waits_for_a_projector_batch_that_holds_the_key(
    database_url, nats_url, stream_names
):
    """The projector opens sealed customers inside its batch transaction with the keys
    share-locked: destroying a key waits for that batch to commit, so the batch's rows are
    there for `customer_forgotten` to blank (no clear row written after the blanking)."""
    nc = await nats.connect(nats_url)
    layout = layout_for(stream_names)
    await ensure_streams(nc, layout)
    session_id = new_session_id()
    try:
        async with privacy(Settings(), _endpoints(database_url)) as personal:
            store = EventStore(nc, layout, sealer=personal.sealer)
            await store.append(
                session_id, [requested(session_id, customer=CAROL)], metadata(), expected_version=0
            )
            recorded = (await store.load(session_id)).events
            forgetter = Forgetter(personal.keyring, store, clock=lambda: T0, new_id=lambda: "e2")
            pool = personal.keyring.pool
            async with pool.acquire() as batch, batch.transaction():
                (opened,) = await personal.opener.open(recorded, batch)
                assert opened.event.customer == CAROL
                forget = asyncio.create_task(
                    forgetter.forget(ForgetCustomer(email=CAROL.email), "forget-2")
                )

                async def forget_blocked() -> bool:
                    waiting = await pool.fetchval(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                    return bool(waiting)

                await wait_until(forget_blocked, 30, what="the forget waiting for the batch")
                assert not forget.done()
            result = await forget  # the batch committed: now the key goes
            assert result.status == "forgotten"
            (after,) = await personal.opener.open(recorded)
            assert isinstance(after.event.customer, ErasedCustomer)
            await store.close()
    finally:
        await nc.close()


async def test_a_customer_forgotten_elsewhere_gets_a_new_subject_when_buying_again(
    database_url, nats_url, stream_names
):
    """Another process's sealer remembers the forgotten subject: its next create for the
    same email finds the subject gone (one statement) and makes a new, readable one."""
    nc = await nats.connect(nats_url)
    layout = layout_for(stream_names)
    await ensure_streams(nc, layout)
    try:
        async with privacy(Settings(), _endpoints(database_url)) as personal:
            elsewhere = Sealer(personal.keyring)  # a second commands process
            first, again = new_session_id(), new_session_id()
            (before,) = await elsewhere.seal(first, [requested(first, customer=CAROL)], None)
            store = EventStore(nc, layout, sealer=personal.sealer)
            forgetter = Forgetter(
                personal.keyring, store, clock=lambda: T0, new_id=lambda: "e3",
                sealer=personal.sealer,
            )  # fmt: skip
            assert (await forgetter.forget(ForgetCustomer(email=CAROL.email), "f-3")).subjects
            (after,) = await elsewhere.seal(again, [requested(again, customer=CAROL)], None)
            assert isinstance(before, CheckoutRequested)
            assert isinstance(after, CheckoutRequested)
            assert after.subject != before.subject
            (opened,) = await personal.opener.open([_recorded(after)])
            assert opened.event.customer == CAROL  # the new order is readable
            await store.close()
    finally:
        await nc.close()


async def test_commands_handled_in_batches_are_sealed_too(database_url, nats_url, stream_names):
    """Creates without a provider go through the batched command path (`handle_many`,
    `append_many`): their customers are sealed like every other append."""
    settings = settings_for(stream_names)
    endpoints = _endpoints(database_url)
    async with (
        privacy(settings, endpoints) as personal,
        orchestrator(settings, nats_url, personal=personal) as system,
    ):
        client = CheckoutClient(system.nc, settings.layout(), personal=personal.opener)
        replies = await asyncio.gather(
            *(
                client.create_session(currency="EUR", amount=100 + n, customer={
                    "email": f"batch.{n}@example.test", "name": f"Batch Buyer {n}",
                })
                for n in range(20)
            )
        )  # fmt: skip
        stored = await stored_messages(nats_url, settings.layout().events_stream)
        assert len(stored) == 20
        assert not any("@example.test" in m or "Batch Buyer" in m for m in stored)
        history = await client.history(replies[0].session_id)
        assert isinstance(history[0].event, CheckoutRequested)
        assert isinstance(history[0].event.customer, Customer)
        assert history[0].event.customer.email is not None
