"""Which of our sessions a verified provider notification is about.

Order, by trust: the provider's own ids (its session id) looked up in the references
we recorded when the provider session was opened; then our session id echoed in the
metadata. Metadata alone is not enough: a session opened through Kong/OpenMeter, or
metadata edited in a provider's dashboard, echoes none, yet the provider's id still
names it. When the two disagree, the provider's id wins (we recorded it ourselves).
"""

from __future__ import annotations

from typing import Protocol

from orchestrator.providers.base import WebhookEvent

__all__ = ["ReferenceLookup", "provider_ids", "resolve_session_id"]


class ReferenceLookup(Protocol):
    """(provider, provider session id) -> our session id (`projections.ReadModels`)."""

    async def session_id_for_provider_reference(
        self, provider: str, provider_session_id: str
    ) -> str | None: ...


def provider_ids(event: WebhookEvent) -> tuple[str, ...]:
    """The provider's ids for the session the event names, without repeats."""
    found = [event.provider_session_id]
    if event.session is not None:
        found.append(event.session.provider_session_id)
    return tuple(dict.fromkeys(pid for pid in found if pid))


def _echoed(event: WebhookEvent) -> str | None:
    if event.session is not None and event.session.session_id:
        return event.session.session_id
    return event.session_id


async def resolve_session_id(event: WebhookEvent, lookup: ReferenceLookup) -> str | None:
    """Our session id: by the provider's reference first, our echoed metadata second."""
    for provider_session_id in provider_ids(event):
        found = await lookup.session_id_for_provider_reference(
            event.provider.value, provider_session_id
        )
        if found is not None:
            return found
    return _echoed(event)
