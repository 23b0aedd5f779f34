"""The operators' console: server-rendered pages under ``/console`` of the HTTP API.

- `auth`: sign-in with an API key into an opaque, HttpOnly, SameSite=Strict session
  cookie; CSRF tokens on every action; read scope looks, write scope acts.
- `routes`: the pages (sessions, a session's timeline and routing, providers, webhooks,
  projections, routing backtests) and `add_console`, which the composition root calls.
- `views`: what the pages read beyond the query API (inbox, provider health, projection
  status), and the one action (replay a webhook).
- `charts`: the inline SVG chart of totals.
- ``templates/`` (Jinja2) and ``static/`` (the stylesheet; htmx 2, vendored from the npm
  package ``htmx.org``, 0BSD).
"""

from orchestrator.http.console.auth import ConsoleAuth, ConsoleSessions
from orchestrator.http.console.routes import ConsoleDeps, add_console

__all__ = ["ConsoleAuth", "ConsoleDeps", "ConsoleSessions", "add_console"]
