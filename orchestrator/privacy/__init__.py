"""Crypto-shredding: personal data sealed per data subject, forgotten on request
(docs/privacy.md). `keyring` holds the keys, `sealing` seals and opens, `forgetting`
forgets, `service` answers the ``forget_customer`` command over NATS."""
