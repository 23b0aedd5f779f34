"""Payment provider adapters behind one Protocol (`base.PaymentProvider`).

Per provider: a client module (I/O over HTTP, the only place that sees SDK and HTTP
exceptions) and a pure ``transformers`` module (requests, responses, statuses, webhooks).
"""
