"""Stripe Checkout: `client.StripeProvider` (the ``stripe`` SDK, async) and pure `transformers`."""
