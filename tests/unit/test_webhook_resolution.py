"""Which session a notification is about: the provider's ids first, our metadata second."""

from __future__ import annotations

from dataclasses import dataclass, field

from events.values import Amounts, Mode, PaymentStatus, Provider, SessionStatus
from orchestrator.providers.base import ProviderSession, WebhookEvent
from orchestrator.webhooks.resolution import provider_ids, resolve_session_id
from orchestrator.webhooks.translate import CommandToSend, Unresolved, translate


@dataclass
class References:
    known: dict[tuple[str, str], str] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def session_id_for_provider_reference(
        self, provider: str, provider_session_id: str
    ) -> str | None:
        self.asked.append((provider, provider_session_id))
        return self.known.get((provider, provider_session_id))


def stripe_event(*, echoed: str | None) -> WebhookEvent:
    session = ProviderSession(
        provider=Provider.STRIPE,
        provider_session_id="cs_test_1",
        session_id=echoed,
        status=SessionStatus.COMPLETE,
        payment_status=PaymentStatus.PAID,
        mode=Mode.PAYMENT,
    )
    return WebhookEvent(
        provider=Provider.STRIPE,
        event_id="evt_1",
        kind="completed",
        provider_type="checkout.session.completed",
        provider_session_id="cs_test_1",
        session=session,
    )


async def test_the_provider_reference_wins_over_echoed_metadata() -> None:
    refs = References({("stripe", "cs_test_1"): "ours_by_reference"})
    assert await resolve_session_id(stripe_event(echoed="edited"), refs) == "ours_by_reference"


async def test_without_a_known_reference_our_echoed_metadata_is_used() -> None:
    refs = References()
    assert await resolve_session_id(stripe_event(echoed="ours"), refs) == "ours"
    assert refs.asked == [("stripe", "cs_test_1")]


async def test_neither_leaves_it_unresolved() -> None:
    event = stripe_event(echoed=None)
    session_id = await resolve_session_id(event, References())
    assert session_id is None
    assert isinstance(translate(event, session_id), Unresolved)


def test_provider_ids_are_not_repeated() -> None:
    assert provider_ids(stripe_event(echoed=None)) == ("cs_test_1",)


async def test_a_payment_row_completes_for_what_the_payment_says() -> None:
    """lomi's PAYMENT_SUCCEEDED: no session object, our id in the row, its gross amount."""
    event = WebhookEvent(
        provider=Provider.LOMI,
        event_id="evt_l",
        kind="completed",
        provider_type="PAYMENT_SUCCEEDED",
        session_id="ours",
        amounts=Amounts(currency="XOF", subtotal=5000, total=5000),
    )
    session_id = await resolve_session_id(event, References())
    command = translate(event, session_id)
    assert isinstance(command, CommandToSend)
    assert command.command_type == "complete"
    assert command.payload["session_id"] == "ours"
    assert command.payload["payment_status"] == "paid"
    assert command.payload["amounts"]["total"] == 5000
