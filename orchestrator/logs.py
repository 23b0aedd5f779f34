"""The one logging set-up: one handler, one format, trace ids on every record.

`configure_logging` is called once per process by the CLI command that runs it (the
composition root's caller); nothing else touches handlers or levels. It guarantees:

- one handler on the root logger, to stderr: human lines by default, one JSON object per
  line with ``CHECKOUT_LOG_FORMAT=json`` (python-json-logger);
- every record carries ``trace_id`` and ``span_id`` of the span current when it was
  logged (``-`` outside any span), so a log line finds its trace and its session's events;
- libraries speak at WARNING and above: the Stripe SDK logs a line per request (and, at
  DEBUG, the bodies with customers' personal data); FastStream's supervisor and uvicorn
  narrate normal operation at INFO. ``--verbose`` raises our own loggers to INFO, never
  the libraries' chatter.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

__all__ = ["LIBRARY_LOGGERS", "LogFormat", "TraceIds", "configure_logging"]

LogFormat = Literal["human", "json"]

LIBRARY_LOGGERS = (
    "stripe",  # a line per request; request bodies (personal data) at DEBUG
    "faststream",
    "orchestrator.broker",  # FastStream's own logger for our broker: its supervisor
    "uvicorn",
    "uvicorn.access",
    "uvicorn.error",
    "httpx",
    "httpcore",
    "nats",
    "asyncio",
)
OUR_LOGGERS = ("orchestrator", "projections", "events")

_HUMAN = "%(asctime)s %(levelname)-7s %(name)s [trace %(trace_id)s] %(message)s"
_JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(trace_id)s %(span_id)s"


class TraceIds(logging.Filter):
    """Adds the current span's ``trace_id`` and ``span_id`` (hex) to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        valid = context.is_valid
        record.trace_id = f"{context.trace_id:032x}" if valid else "-"
        record.span_id = f"{context.span_id:016x}" if valid else "-"
        return True


def _formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(
            _JSON_FIELDS,
            rename_fields={"levelname": "level", "name": "logger", "asctime": "time"},
        )
    return logging.Formatter(_HUMAN)


def configure_logging(
    log_format: LogFormat = "human", *, verbose: bool = False, stream: TextIO | None = None
) -> logging.Handler:
    """Install the one handler (replacing any earlier one) and set the levels."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(TraceIds())
    handler.setFormatter(_formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    ours = logging.INFO if verbose else logging.WARNING
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(ours)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(capture=True)
    return handler
