"""The provider contract: what every `PaymentProvider` adapter does against its simulator.

Each test states one behaviour once and runs against every (adapter, simulator) pair
(`harness`), or against those able to have it (`signing`: sends signed webhooks;
`deduplicating`: recognises a redelivered open at the provider). Assertions are about
behaviour (error classes, retryability, idempotency, signature rejection), never about a
provider's wire fields: those belong to the per-provider files
(tests/integration/test_provider_*.py), which keep only what is provider-specific.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from events.values import SessionStatus
from orchestrator.providers.base import (
    PaymentProvider,
    ProviderRejected,
    ProviderSession,
    ProviderUnavailable,
    WebhookEvent,
    WebhookRejected,
)
from tests.integration.providers.harness import UNREACHABLE, Harness, Receiver, wrong_secret

# --- open, retrieve, idempotency --------------------------------------------------------------


async def test_the_adapter_is_a_payment_provider_named_for_its_provider(harness: Harness) -> None:
    adapter: PaymentProvider = harness.adapter()
    assert adapter.name is harness.name
    assert adapter.capabilities.currencies
    assert adapter.capabilities.modes


async def test_open_gives_an_open_session_that_retrieve_finds(harness: Harness) -> None:
    adapter = harness.adapter()
    opened = await adapter.open_session(harness.request("cs_contract_open"))
    assert opened.provider is harness.name
    assert opened.session_id == "cs_contract_open"
    assert opened.status is SessionStatus.OPEN
    assert harness.created() == 1
    retrieved = await adapter.retrieve_session(opened.provider_session_id)
    assert retrieved.provider_session_id == opened.provider_session_id
    assert retrieved.session_id == "cs_contract_open"
    assert retrieved.status is SessionStatus.OPEN


async def test_a_redelivered_open_opens_one_session_and_a_new_attempt_another(
    harness: Harness,
) -> None:
    adapter = harness.adapter()
    first = await adapter.open_session(harness.request())
    again = await adapter.open_session(harness.request())
    assert again.provider_session_id == first.provider_session_id
    assert harness.created() == 1
    next_attempt = await adapter.open_session(harness.request(attempt=2))
    assert next_attempt.provider_session_id != first.provider_session_id
    assert harness.created() == 2


async def test_an_answer_lost_in_a_timeout_is_found_by_the_redelivered_open(
    deduplicating: Harness,
) -> None:
    impatient = deduplicating.adapter(timeout_seconds=0.3)
    deduplicating.sim.faults.set(hang_next=1, hang_seconds=5, hang_phase="after")
    with pytest.raises(ProviderUnavailable) as lost:
        await impatient.open_session(deduplicating.request())  # done there; we never heard
    assert lost.value.retryable
    assert deduplicating.created() == 1
    # the command is redelivered, possibly to another process: a fresh adapter
    again = await deduplicating.adapter().open_session(deduplicating.request())
    assert deduplicating.created() == 1
    retrieved = await deduplicating.adapter().retrieve_session(again.provider_session_id)
    assert retrieved.session_id == deduplicating.request().session_id


# --- faults: what is retryable, what is not ---------------------------------------------------


async def test_a_5xx_on_open_is_a_retryable_unavailability(harness: Harness) -> None:
    adapter = harness.adapter()
    harness.sim.faults.set(error_next=1, error_status=503)
    with pytest.raises(ProviderUnavailable) as caught:
        await adapter.open_session(harness.request())
    assert caught.value.retryable
    assert caught.value.provider is harness.name
    assert harness.created() == 0
    assert (await adapter.open_session(harness.request())).status is SessionStatus.OPEN


async def test_a_5xx_on_retrieve_is_a_retryable_unavailability(harness: Harness) -> None:
    adapter = harness.adapter()
    opened = await adapter.open_session(harness.request())
    harness.retrieve_sim.faults.set(error_next=1, error_status=502)
    with pytest.raises(ProviderUnavailable) as caught:
        await adapter.retrieve_session(opened.provider_session_id)
    assert caught.value.retryable
    assert caught.value.provider is harness.name  # Kong's Stripe leg is still Kong's
    assert (await adapter.retrieve_session(opened.provider_session_id)).status is (
        SessionStatus.OPEN
    )


async def test_a_timeout_is_unavailable_and_opens_nothing(harness: Harness) -> None:
    adapter = harness.adapter(timeout_seconds=0.3)
    harness.sim.faults.set(hang_next=1, hang_seconds=5)
    with pytest.raises(ProviderUnavailable) as caught:
        await adapter.open_session(harness.request())
    assert caught.value.retryable
    assert harness.created() == 0


async def test_a_refused_connection_is_unavailable(harness: Harness) -> None:
    adapter = harness.adapter(**{harness.url_field: UNREACHABLE})
    with pytest.raises(ProviderUnavailable) as caught:
        await adapter.open_session(harness.request())
    assert caught.value.retryable
    assert caught.value.provider is harness.name


async def test_a_wrong_credential_is_rejected_and_never_echoed(harness: Harness) -> None:
    secret = wrong_secret(harness)
    adapter = harness.adapter(**{harness.credential_field: secret})
    with pytest.raises(ProviderRejected) as caught:
        await adapter.open_session(harness.request())
    assert not caught.value.retryable
    assert caught.value.provider is harness.name
    shown = f"{caught.value} {caught.value.to_dict()!r} {caught.value!r}"
    assert secret.get_secret_value() not in shown
    assert harness.created() == 0


async def test_retrieving_an_unknown_session_is_rejected(harness: Harness) -> None:
    with pytest.raises(ProviderRejected) as caught:
        await harness.adapter().retrieve_session(harness.unknown_session_id)
    assert not caught.value.retryable
    assert caught.value.provider is harness.name


async def test_an_unsigned_webhook_is_rejected(harness: Harness) -> None:
    body = b'{"id": "evt_contract", "type": "checkout.session.completed"}'
    with pytest.raises(WebhookRejected) as caught:
        harness.adapter().verify_webhook({}, body, datetime.now(UTC))
    assert not caught.value.retryable


# --- signed webhooks --------------------------------------------------------------------------


def _receiver(harness: Harness) -> Receiver:
    assert harness.receiver is not None
    return harness.receiver


def _verified(adapter: PaymentProvider, receiver: Receiver) -> list[WebhookEvent]:
    now = datetime.now(UTC)
    return [adapter.verify_webhook(headers, body, now) for headers, body in receiver.received]


async def _paid(harness: Harness, adapter: PaymentProvider) -> ProviderSession:
    opened = await adapter.open_session(harness.request())
    result = await harness.sim.pay(opened.provider_session_id)
    assert result.webhooks
    assert {w["state"] for w in result.webhooks} == {"delivered"}
    return opened


async def test_a_payment_is_told_by_a_verified_webhook_and_by_retrieve(signing: Harness) -> None:
    adapter = signing.adapter()
    opened = await _paid(signing, adapter)
    events = _verified(adapter, _receiver(signing))
    assert "completed" in {e.kind for e in events}
    # each names the session: by the provider's session id, or (a payment about it, as
    # lomi's transaction row) by the orchestrator's id the payment echoes
    for event in events:
        assert (event.provider_session_id, event.session_id) in {
            (opened.provider_session_id, None),
            (opened.provider_session_id, "cs_contract_1"),
            (None, "cs_contract_1"),
        }, event
    assert (await adapter.retrieve_session(opened.provider_session_id)).status is (
        SessionStatus.COMPLETE
    )


async def test_forged_webhooks_are_rejected(signing: Harness) -> None:
    adapter = signing.adapter()
    await _paid(signing, adapter)
    headers, body = _receiver(signing).received[-1]
    now = datetime.now(UTC)
    assert adapter.verify_webhook(headers, body, now).event_id  # the genuine one passes
    tampered = body.replace(b'"', b' "', 1)  # same JSON, other bytes
    assert tampered != body
    with pytest.raises(WebhookRejected):
        adapter.verify_webhook(headers, tampered, now)
    with pytest.raises(WebhookRejected):
        adapter.verify_webhook({}, body, now)  # no signature at all
    stranger = signing.adapter(webhook_secret=SecretStr(signing.other_webhook_secret))
    with pytest.raises(WebhookRejected):
        stranger.verify_webhook(headers, body, now)  # signed, but not with our secret


async def test_a_redelivered_webhook_keeps_its_event_id(signing: Harness) -> None:
    adapter = signing.adapter()
    await _paid(signing, adapter)
    receiver = _receiver(signing)
    first = signing.sim.webhooks.deliveries[0]
    delivered = len(receiver.received)
    await signing.sim.webhooks.redeliver(first.delivery_id)
    assert len(receiver.received) == delivered + 1
    now = datetime.now(UTC)
    original = adapter.verify_webhook(*receiver.received[0], now)
    redelivered = adapter.verify_webhook(*receiver.received[-1], now)
    assert redelivered.event_id == original.event_id  # what the inbox deduplicates on


async def test_a_dropped_webhook_never_arrives_and_retrieve_still_tells(signing: Harness) -> None:
    adapter = signing.adapter()
    opened = await adapter.open_session(signing.request())
    signing.sim.faults.set(drop_webhooks_next=10)  # more than any provider sends for one payment
    result = await signing.sim.pay(opened.provider_session_id)
    assert result.webhooks
    assert {w["state"] for w in result.webhooks} == {"dropped"}
    assert _receiver(signing).received == []
    assert (await adapter.retrieve_session(opened.provider_session_id)).status is (
        SessionStatus.COMPLETE
    )
