"""Test support, in one place: what tests at every level build, run and wait on.

- `waiting`: ``wait_until(condition, timeout)``, the one way a test waits for something.
- `builders`: unique stream names and layouts, events and their metadata, command bodies.
- `apps`: the system running in-process (orchestrator, read side, gateway, simulators).
- `projections`: the projection tests' world and the fold the read models must equal.
- `infra`: a steady command load and its checks; helpers for a JetStream cluster.
- `reports`: what a fault case prints (`pytest -m fault -s`).
- `racing`: the worker process of the racing-commands case (``python -m``).
- `deploy`, `tls`: deploy/'s files and configs; throw-away certificates.
- `servers`: where the suite's own PostgreSQL clusters live (outside pytest's temporary root).

Fixtures stay in the conftest files; this package holds plain code they and tests import.
"""
