"""``python -m orchestrator.cli``: the same as ``checkout-orchestrator``."""

from orchestrator.cli import app

app()
