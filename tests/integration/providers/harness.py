"""One (adapter, simulator) pair per provider, built the same way for the contract suite.

A `Harness` hides what differs between providers (the simulator's constructor, the
adapter's config fields, a request the provider accepts, where its webhooks arrive) so
that `test_contract.py` states each behaviour once and runs it against every pair, as
eventsourcing's abstract persistence suite runs against every backend. It knows nothing
of wire formats: only of the adapter's protocol and the simulators' shared control surface.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from pydantic import SecretStr
from starlette.responses import Response

from events.values import Customer, LineItem, Mode, Provider, RequestedAmount, SessionUrls
from orchestrator.http.server import HttpServer
from orchestrator.providers.base import OpenRequest, PaymentProvider
from orchestrator.providers.kong.client import KongProvider
from orchestrator.providers.lomi.client import LomiProvider
from orchestrator.providers.polar.client import PolarProvider
from orchestrator.providers.stripe.client import StripeProvider
from orchestrator.sandbox.kong_sim import KongSimulator
from orchestrator.sandbox.lomi_sim import LomiSimulator
from orchestrator.sandbox.polar_sim import PolarSimulator
from orchestrator.sandbox.simulator import Simulator
from orchestrator.sandbox.stripe_sim import StripeSimulator

__all__ = ["ALL", "DEDUPLICATING", "SIGNING", "Harness", "Receiver", "open_harness"]

ALL = (Provider.STRIPE, Provider.POLAR, Provider.LOMI, Provider.KONG)
# providers that send the merchant signed webhooks of their own (Kong sends none)
SIGNING = (Provider.STRIPE, Provider.POLAR, Provider.LOMI)
# providers that recognise, at the provider, an open whose answer was lost: an idempotency
# key. Polar finds a redelivered open by a lookup before creating, and a simulator fault
# (it hits the next request: the lookup) cannot lose the create's answer alone; Kong
# honours no key (docs/providers.md)
DEDUPLICATING = (Provider.STRIPE, Provider.LOMI)

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused
KONG_CUSTOMER = "01G65Z755AFWAKHE12NY0CQ9FH"
POLAR_SECRET = "whsec_" + base64.b64encode(b"polar-sandbox-webhook-secret").decode()


@dataclass
class Receiver:
    """Our side of a provider's webhooks: records what arrives, answers 204."""

    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/webhooks")
        async def hook(request: Request) -> Response:
            self.received.append((dict(request.headers), await request.body()))
            return Response(status_code=204)

        return app


@dataclass
class Harness:
    """One provider's adapter over its simulator, for behaviour every provider shares."""

    name: Provider
    sim: Simulator  # the server `open_session` calls
    retrieve_sim: Simulator  # the server `retrieve_session` calls (Kong's: its Stripe)
    receiver: Receiver | None  # None: the provider sends no webhooks of its own
    credential_field: str  # the config field holding the API credential
    url_field: str  # the config field holding the API's base URL
    unknown_session_id: str  # well-formed for the provider, never created
    other_webhook_secret: str  # well-formed for the provider, not the simulator's
    config: Callable[..., Any]  # overrides -> the adapter's config, pointing at `sim`
    build: Callable[[Any], PaymentProvider]
    request_for: Callable[[str, int], OpenRequest]
    adapters: list[PaymentProvider] = field(default_factory=list)

    def adapter(self, **overrides: Any) -> PaymentProvider:
        """A new adapter (closed with the harness); ``overrides`` change its config."""
        adapter = self.build(self.config(**overrides))
        self.adapters.append(adapter)
        return adapter

    def request(self, session_id: str = "cs_contract_1", attempt: int = 1) -> OpenRequest:
        """An open request this provider accepts."""
        return self.request_for(session_id, attempt)

    def created(self) -> int:
        return self.sim.stats()["sessions_created"]


def _stripe_request(session_id: str, attempt: int) -> OpenRequest:
    return OpenRequest(
        session_id=session_id,
        attempt=attempt,
        mode=Mode.PAYMENT,
        amount=RequestedAmount(
            currency="EUR", line_items=(LineItem(name="Tea", quantity=2, unit_amount=450),)
        ),
        urls=SessionUrls(
            success_url="https://shop.example/ok", cancel_url="https://shop.example/no"
        ),
    )


def _polar_request(session_id: str, attempt: int) -> OpenRequest:
    return OpenRequest(
        session_id=session_id,
        attempt=attempt,
        mode=Mode.PAYMENT,
        amount=RequestedAmount(currency="USD", amount=2500),
        customer=Customer(email="ada@example.com"),
        urls=SessionUrls(success_url="https://shop.example/ok"),
    )


def _lomi_request(session_id: str, attempt: int) -> OpenRequest:
    return OpenRequest(
        session_id=session_id,
        attempt=attempt,
        mode=Mode.PAYMENT,
        amount=RequestedAmount(currency="XOF", amount=10000),
        customer=Customer(email="awa@example.sn", phone="+221770000000", country="SN"),
        urls=SessionUrls(success_url="https://shop.example/ok"),
    )


def _kong_request(session_id: str, attempt: int) -> OpenRequest:
    return OpenRequest(
        session_id=session_id,
        attempt=attempt,
        mode=Mode.SETUP,
        amount=RequestedAmount(currency="USD"),
        metadata={"billing_customer_id": KONG_CUSTOMER},
        urls=SessionUrls(success_url="https://app.example/ok", cancel_url="https://app.example/no"),
    )


async def _receiver(stack: AsyncExitStack) -> Receiver:
    receiver = Receiver()
    server = await stack.enter_async_context(HttpServer(receiver.app()))
    receiver.url = f"{server.base_url}/webhooks"
    return receiver


async def _stripe(stack: AsyncExitStack) -> Harness:
    receiver = await _receiver(stack)
    sim = await stack.enter_async_context(StripeSimulator(webhook_url=receiver.url))

    def config(**overrides: Any) -> Any:
        # no SDK retries: the contract observes one call's outcome
        return sim.adapter_config(**{"max_network_retries": 0, "timeout_seconds": 2.0} | overrides)

    return Harness(
        Provider.STRIPE, sim, sim, receiver, "api_key", "api_base", "cs_test_nope",
        "whsec_attacker", config, StripeProvider, _stripe_request,
    )  # fmt: skip


async def _polar(stack: AsyncExitStack) -> Harness:
    receiver = await _receiver(stack)
    sim = await stack.enter_async_context(
        PolarSimulator(
            access_token="polar_oat_sandbox_token",  # noqa: S106 - the simulator's own
            webhook_secret=POLAR_SECRET,
            webhook_url=receiver.url,
        )
    )

    def config(**overrides: Any) -> Any:
        return sim.adapter_config(**{"timeout_seconds": 2.0} | overrides)

    return Harness(
        Provider.POLAR, sim, sim, receiver, "access_token", "base_url",
        "4b1e4a7e-0000-4000-8000-000000000000", "whsec_c29tZXRoaW5n",
        config, PolarProvider, _polar_request,
    )  # fmt: skip


async def _lomi(stack: AsyncExitStack) -> Harness:
    receiver = await _receiver(stack)
    sim = await stack.enter_async_context(
        LomiSimulator(
            api_key="lomi_sk_test_sandbox",
            webhook_secret="lomi_whsec_sandbox_secret",  # noqa: S106 - the simulator's own
            webhook_url=receiver.url,
        )
    )

    def config(**overrides: Any) -> Any:
        return sim.adapter_config(**{"timeout_seconds": 2.0} | overrides)

    return Harness(
        Provider.LOMI, sim, sim, receiver, "api_key", "base_url",
        "5b7c1d52-0000-4000-8000-000000000000", "not-the-secret",
        config, LomiProvider, _lomi_request,
    )  # fmt: skip


async def _kong(stack: AsyncExitStack) -> Harness:
    stripe = await stack.enter_async_context(StripeSimulator())
    sim = await stack.enter_async_context(KongSimulator(stripe, token="kpat_test_token"))  # noqa: S106
    sim.add_customer(KONG_CUSTOMER, email="billing@acme.example")

    def config(**overrides: Any) -> Any:
        leg = stripe.adapter_config(max_network_retries=0)
        return sim.adapter_config(**{"stripe": leg, "timeout_seconds": 2.0} | overrides)

    return Harness(
        Provider.KONG, sim, stripe, None, "token", "base_url", "cs_test_nope",
        "whsec_attacker", config, KongProvider, _kong_request,
    )  # fmt: skip


_BUILDERS = {
    Provider.STRIPE: _stripe,
    Provider.POLAR: _polar,
    Provider.LOMI: _lomi,
    Provider.KONG: _kong,
}


@asynccontextmanager
async def open_harness(name: Provider) -> AsyncIterator[Harness]:
    """The provider's simulator(s) and webhook receiver, running; closed on exit."""
    async with AsyncExitStack() as stack:
        harness = await _BUILDERS[name](stack)
        try:
            yield harness
        finally:
            for adapter in harness.adapters:
                await adapter.aclose()


def wrong_secret(harness: Harness) -> SecretStr:
    """A credential of the right shape for no account."""
    return SecretStr(f"{harness.name.value}_wrong_secret_4242")
