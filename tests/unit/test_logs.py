"""The one log set-up: one handler, human or JSON, trace ids on every record, libraries quiet."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from orchestrator.logs import LIBRARY_LOGGERS, OUR_LOGGERS, configure_logging

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0x00F067AA0BA902B7


@pytest.fixture
def restored() -> Iterator[None]:
    """configure_logging owns the root logger: give pytest's handlers and levels back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in (*LIBRARY_LOGGERS, *OUR_LOGGERS)}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)
    logging.captureWarnings(capture=False)


def _in_span() -> trace.Span:
    return NonRecordingSpan(
        SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(0))
    )


@pytest.mark.usefixtures("restored")
def test_human_lines_carry_the_trace_id_and_libraries_stay_quiet():
    out = io.StringIO()
    configure_logging("human", verbose=True, stream=out)
    with trace.use_span(_in_span()):
        logging.getLogger("orchestrator.services").info("command handled")
        logging.getLogger("stripe").info("message='Request to Stripe api' method=post")
    logging.getLogger("projections.projector").warning("outside any span")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "INFO" in lines[0]
    assert f"[trace {TRACE_ID:032x}] command handled" in lines[0]
    assert "[trace -] outside any span" in lines[1]


@pytest.mark.usefixtures("restored")
def test_json_records_are_one_object_per_line_with_trace_and_span():
    out = io.StringIO()
    configure_logging("json", stream=out)
    with trace.use_span(_in_span()):
        logging.getLogger("orchestrator.webhooks").warning("webhook %s parked", "wh_1")
    record = json.loads(out.getvalue())
    assert record["level"] == "WARNING"
    assert record["logger"] == "orchestrator.webhooks"
    assert record["message"] == "webhook wh_1 parked"
    assert record["trace_id"] == f"{TRACE_ID:032x}"
    assert record["span_id"] == f"{SPAN_ID:016x}"


@pytest.mark.usefixtures("restored")
def test_without_verbose_our_info_is_quiet_and_one_handler_replaces_earlier_ones():
    out = io.StringIO()
    configure_logging("human", stream=io.StringIO())
    configure_logging("human", stream=out)
    logging.getLogger("orchestrator").info("narration")
    logging.getLogger("faststream").info("callback for Task-21 is being executed...")
    logging.getLogger("orchestrator").error("a real problem")
    assert len(logging.getLogger().handlers) == 1
    assert out.getvalue().count("\n") == 1
    assert "a real problem" in out.getvalue()
