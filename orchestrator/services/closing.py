"""Closing a session at its provider before we record it expired or canceled.

Our expiry or cancellation means nothing if the customer can still pay the provider's
page. So a merchant's or the sweeper's expire/cancel of an open session first expires
the provider session (Stripe, Kong). Where the provider has no expire (Polar, lomi) the
provider's own expiry stands and a late payment is caught by the webhook inbox.

If the provider refuses because the session completed meanwhile, the command is
rejected with `PaymentCompleted`: money taken is never hidden behind an expiry.
"""

from __future__ import annotations

from collections.abc import Mapping

from events.values import Provider, SessionStatus
from orchestrator.domain.commands import CancelCheckoutSession, ExpireCheckoutSession
from orchestrator.domain.state import Opened, State
from orchestrator.errors import PaymentCompleted
from orchestrator.providers.base import PaymentProvider, ProviderError, UnsupportedOperation

__all__ = ["ProviderCloser"]


class ProviderCloser:
    def __init__(self, providers: Mapping[Provider, PaymentProvider]) -> None:
        self._providers = providers

    async def close(
        self, state: State, command: ExpireCheckoutSession | CancelCheckoutSession
    ) -> None:
        """Expire the provider's session; raise when that must stop the command."""
        if not isinstance(state, Opened):
            return
        if isinstance(command, ExpireCheckoutSession) and command.reason == "provider":
            return  # the provider told us: nothing to close
        adapter = self._providers.get(state.provider)
        if adapter is None:
            return
        try:
            await adapter.expire_session(state.provider_session_id)
        except UnsupportedOperation:
            return
        except ProviderError as refused:
            remote = await adapter.retrieve_session(state.provider_session_id)
            if remote.status is SessionStatus.COMPLETE:
                raise PaymentCompleted(command.session_id, state.provider.value) from refused
            if remote.status is not SessionStatus.EXPIRED:
                raise
