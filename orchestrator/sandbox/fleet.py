"""All four provider simulators at once: the sandbox behind `up --sandbox`, the demo and
the end-to-end tests.

Kong's simulator keeps its sessions in the Stripe simulator (Kong opens Stripe checkout
sessions in setup mode). Webhooks go to ``<ingress>/v1/webhooks/<provider>`` once the
ingress URL is known (`point_webhooks_at`).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

from events.values import Provider
from orchestrator.providers.base import PaymentProvider
from orchestrator.providers.kong.client import KongProvider
from orchestrator.providers.lomi.client import LomiProvider
from orchestrator.providers.polar.client import PolarProvider
from orchestrator.providers.stripe.client import StripeProvider
from orchestrator.sandbox.kong_sim import KongSimulator
from orchestrator.sandbox.lomi_sim import LomiSimulator
from orchestrator.sandbox.polar_sim import PolarSimulator
from orchestrator.sandbox.simulator import Simulator
from orchestrator.sandbox.stripe_sim import StripeSimulator

__all__ = ["SandboxFleet"]

_SANDBOX_SECRET = "whsec_sandbox_fleet"  # noqa: S105 - the sandbox's own, shown in docs


class SandboxFleet:
    def __init__(self) -> None:
        self.stripe = StripeSimulator()
        self.kong = KongSimulator(self.stripe)
        self.polar = PolarSimulator(
            access_token="polar_sandbox",  # noqa: S106 - the sandbox's own token
            webhook_secret=_SANDBOX_SECRET,
        )
        self.lomi = LomiSimulator(api_key="lomi_sandbox", webhook_secret=_SANDBOX_SECRET)
        self._stack = AsyncExitStack()
        self.providers: dict[Provider, PaymentProvider] = {}

    @property
    def simulators(self) -> dict[Provider, Simulator]:
        return {
            Provider.STRIPE: self.stripe,
            Provider.KONG: self.kong,
            Provider.POLAR: self.polar,
            Provider.LOMI: self.lomi,
        }

    async def __aenter__(self) -> Self:
        for simulator in self.simulators.values():
            await self._stack.enter_async_context(simulator)
        self.providers = {
            Provider.STRIPE: StripeProvider(self.stripe.adapter_config()),
            Provider.KONG: KongProvider(self.kong.adapter_config()),
            Provider.POLAR: PolarProvider(self.polar.adapter_config()),
            Provider.LOMI: LomiProvider(self.lomi.adapter_config()),
        }
        for adapter in self.providers.values():
            self._stack.push_async_callback(adapter.aclose)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def point_webhooks_at(self, ingress_url: str) -> None:
        base = ingress_url.rstrip("/")
        for provider, simulator in self.simulators.items():
            if provider is not Provider.KONG:  # Kong sends none
                simulator.webhooks.url = f"{base}/v1/webhooks/{provider.value}"
