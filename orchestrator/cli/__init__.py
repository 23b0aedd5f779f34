"""``checkout-orchestrator``: run the system and look at it.

checkout-orchestrator up [--sandbox]   everything: servers, handlers, projectors, HTTP
checkout-orchestrator up --role R      one role: commands, projectors or api (deploy/)
checkout-orchestrator status           servers, streams, queued commands
checkout-orchestrator route ...        what the router would choose, and why
checkout-orchestrator route backtest   candidate rules replayed over the recorded checkouts
checkout-orchestrator migrate          database migrations
checkout-orchestrator projections ...  run / status / rebuild read models
checkout-orchestrator webhooks ...     the webhook inbox: status, replay
checkout-orchestrator reconcile       ask the providers about open sessions [--dry-run]
checkout-orchestrator api-keys ...     the HTTP API's keys: create, revoke, list
checkout-orchestrator privacy ...      personal data: forget, status, seal-stream, rotate-kek
checkout-orchestrator asyncapi         the AsyncAPI document of the NATS surface
checkout-orchestrator demo             the whole system with the provider simulators

One module per group of commands; `common` holds what they share. The benchmark is not
here: it is the repository's `bench/` (``python -m bench``), outside the installed package.
"""

from __future__ import annotations

import typer

from orchestrator.cli.api_keys import api_keys_app
from orchestrator.cli.privacy import privacy_app
from orchestrator.cli.projections import projections_app
from orchestrator.cli.reconcile import reconcile
from orchestrator.cli.route import route_app
from orchestrator.cli.serve import asyncapi_command, demo, migrate_command, status, up
from orchestrator.cli.webhooks import webhooks_app

__all__ = ["app"]

app = typer.Typer(help="Event-sourced, multi-provider checkout orchestrator.", no_args_is_help=True)
app.command()(up)
app.command()(status)
app.command("migrate")(migrate_command)
app.command("asyncapi")(asyncapi_command)
app.command("demo")(demo)
app.command("reconcile")(reconcile)
app.add_typer(route_app, name="route")
app.add_typer(projections_app, name="projections")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(api_keys_app, name="api-keys")
app.add_typer(privacy_app, name="privacy")
