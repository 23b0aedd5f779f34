"""The sandbox: local simulators of the payment providers, for tests and the demo.

Shared machinery (reused by every simulator):

- `orchestrator.http.server.HttpServer` (the product's own server): an ASGI app served by
  uvicorn on 127.0.0.1 and a free port, inside the current asyncio loop.
- `faults.Faults` / `faults.FaultPlan`: latency, 5xx for the next N requests or a rate,
  hangs longer than the client's timeout (before or after processing), dropped webhooks.
- `webhooks.WebhookSender`: signs (provider-specific `Signer`), POSTs with httpx,
  retries with backoff, honours the drop fault, records every delivery.
- `simulator.Simulator`: the base class tying them together, with the common control
  routes under ``/_sim`` (pay / fail / expire a session, stats, faults, webhooks).

Provider simulators: `stripe_sim.StripeSimulator`, `kong_sim.KongSimulator` (Kong's
sessions are Stripe sessions: it shares a `StripeSimulator`'s state), and Polar and
lomi in their own modules; `fleet.SandboxFleet` runs all four for `up --sandbox`, and
`demo` is `checkout-orchestrator demo`. See ``docs/sandbox.md``.
"""
