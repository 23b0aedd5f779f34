"""Which providers this deployment has: built from settings (credentials) only.

A provider without credentials is left out, and the router's capability filter then
never offers it. Secrets stay `SecretStr` from the environment to the adapter.
"""

from __future__ import annotations

from events.values import Provider
from orchestrator.providers.base import PaymentProvider
from orchestrator.providers.kong.client import KongConfig, KongProvider
from orchestrator.providers.lomi.client import LomiConfig, LomiProvider
from orchestrator.providers.polar.client import PolarConfig, PolarProvider
from orchestrator.providers.stripe.client import StripeConfig, StripeProvider
from orchestrator.settings import Settings

__all__ = ["configured_providers"]


def _stripe(settings: Settings) -> StripeProvider | None:
    if settings.stripe_api_key is None or settings.stripe_webhook_secret is None:
        return None
    return StripeProvider(
        StripeConfig(
            api_key=settings.stripe_api_key,
            webhook_secret=settings.stripe_webhook_secret,
            api_base=settings.stripe_api_base,
        )
    )


def _polar(settings: Settings) -> PolarProvider | None:
    token, secret = settings.polar_access_token, settings.polar_webhook_secret
    if token is None or secret is None or settings.polar_payment_product_id is None:
        return None
    return PolarProvider(
        PolarConfig(
            access_token=token,
            webhook_secret=secret,
            payment_product_id=settings.polar_payment_product_id,
            base_url=settings.polar_base_url,
        )
    )


def _lomi(settings: Settings) -> LomiProvider | None:
    if settings.lomi_api_key is None or settings.lomi_webhook_secret is None:
        return None
    return LomiProvider(
        LomiConfig(
            api_key=settings.lomi_api_key,
            webhook_secret=settings.lomi_webhook_secret,
            base_url=settings.lomi_base_url,
        )
    )


def _kong(settings: Settings) -> KongProvider | None:
    if settings.kong_token is None:
        return None
    stripe = None
    if settings.kong_stripe_api_key is not None:
        # retrieve/expire of Kong's sessions go through the connected Stripe account
        stripe = StripeConfig(
            api_key=settings.kong_stripe_api_key,
            webhook_secret=settings.stripe_webhook_secret or settings.kong_stripe_api_key,
            api_base=settings.stripe_api_base,
        )
    return KongProvider(
        KongConfig(token=settings.kong_token, base_url=settings.kong_base_url, stripe=stripe)
    )


def configured_providers(settings: Settings) -> dict[Provider, PaymentProvider]:
    built: dict[Provider, PaymentProvider | None] = {
        Provider.STRIPE: _stripe(settings),
        Provider.POLAR: _polar(settings),
        Provider.LOMI: _lomi(settings),
        Provider.KONG: _kong(settings),
    }
    return {name: adapter for name, adapter in built.items() if adapter is not None}
