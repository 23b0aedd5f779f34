"""The committed AsyncAPI document is the one the code generates (no drift)."""

import json
from pathlib import Path

from events import EVENT_TYPES
from orchestrator.domain.commands import COMMAND_TYPES
from orchestrator.jetstream.asyncapi import asyncapi_document, asyncapi_json

DOC = Path(__file__).parents[2] / "docs" / "asyncapi.json"


def test_the_committed_document_matches_the_code():
    assert DOC.read_text() == asyncapi_json(), (
        "regenerate with: checkout-orchestrator asyncapi > docs/asyncapi.json"
    )


def test_every_command_event_and_reply_is_documented():
    channels = asyncapi_document()["channels"]
    assert {f"command {t}" for t in COMMAND_TYPES} <= set(channels)
    assert {f"event {t}" for t in EVENT_TYPES} <= set(channels)
    assert {"reply accepted", "reply rejected"} <= set(channels)
    assert channels["command create"]["address"] == "checkout.commands.create"


def test_command_payloads_omit_what_the_orchestrator_stamps():
    schemas = json.loads(asyncapi_json())["components"]["schemas"]
    create = schemas["CreateCheckoutSession"]
    assert "type" not in create["properties"]
    assert "at" not in create["properties"]
    assert "currency" in create["required"]
