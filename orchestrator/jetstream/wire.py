"""The NATS command protocol, shared by the command service and the Python client.

A command is published to JetStream on ``<commands prefix>.<type>`` (stream
``CHECKOUT_COMMANDS``, a work queue) with a JSON object body and these headers:

- ``Checkout-Command-Id`` (required): the idempotency key; resending the same id
  never appends twice and answers with the first result.
- ``Checkout-Correlation-Id`` (optional, defaults to the command id).
- ``Checkout-Reply-To`` (optional): a core NATS inbox that receives the reply.
- ``traceparent`` (optional, W3C trace context).

The reply is JSON: ``{"status": "accepted", "command_id", "session_id", "sequence",
"appended", "duplicate"}`` or ``{"status": "rejected", "command_id", "error": {"code",
"message", ...}}``. The body never carries ``type`` (the subject does) or ``at`` (the
orchestrator stamps the time it handles the command).

The body is validated in strict JSON mode (``"5000"`` is not a number); a caller's
command (create, cancel, expire) also with the `events.values.INPUT` context (no
control characters, real emails and countries): one schema for every caller, as the
HTTP API sends its bodies through here too. Commands that record what a provider
reported (complete, mark_processing, ...) are not held to the input rules: refusing
them would lose a real payment over an odd customer name. A
rejected body stores nothing. An accepted one gets a `fingerprint` (canonical JSON of
the validated command) that binds its command id to these parameters.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from events.values import INPUT
from orchestrator.domain.commands import COMMAND_TYPES, Command, command_adapter
from orchestrator.errors import CheckoutError, InvalidCommand, UnknownCommand
from orchestrator.services.handling import Accepted, CommandContext

__all__ = [
    "CALLER_COMMANDS",
    "COMMAND_ID",
    "CORRELATION_ID",
    "REPLY_TO",
    "TRACEPARENT",
    "AcceptedReply",
    "RejectedReply",
    "Reply",
    "accepted_reply",
    "command_id_of",
    "derive_session_id",
    "fingerprint",
    "parse_command",
    "parse_reply",
    "rejected_reply",
]

COMMAND_ID = "Checkout-Command-Id"
CORRELATION_ID = "Checkout-Correlation-Id"
REPLY_TO = "Checkout-Reply-To"
TRACEPARENT = "traceparent"

CALLER_COMMANDS = frozenset({"create", "cancel", "expire"})
"""Commands a merchant sends (HTTP or NATS); validated with the input rules."""

_ID = re.compile(r"^[A-Za-z0-9_:.-]{1,128}$")


class AcceptedReply(BaseModel):
    status: Literal["accepted"] = "accepted"
    command_id: str
    session_id: str
    sequence: int
    appended: int
    duplicate: bool = False
    provider: str | None = None
    provider_session_id: str | None = None
    checkout_url: str | None = None
    expires_at: datetime | None = None
    expiry_enforced_by: Literal["provider", "orchestrator"] | None = None
    client_secret: str | None = Field(default=None, repr=False)


class RejectedReply(BaseModel):
    status: Literal["rejected"] = "rejected"
    command_id: str | None
    error: dict[str, Any]

    @property
    def code(self) -> str:
        return str(self.error.get("code", "internal_error"))


Reply = AcceptedReply | RejectedReply


def derive_session_id(command_id: str) -> str:
    """A create without a session id gets one derived from its command id, so a retry
    of the same command lands on the same session."""
    return "cs_" + hashlib.sha256(command_id.encode()).hexdigest()[:32]


def command_id_of(headers: Mapping[str, str]) -> str:
    command_id = headers.get(COMMAND_ID)
    if not command_id or not _ID.match(command_id):
        raise InvalidCommand(
            f"header {COMMAND_ID} is required: 1-128 characters of A-Z a-z 0-9 _ : . -",
            [{"loc": ["headers", COMMAND_ID], "msg": "missing or malformed"}],
        )
    return command_id


def fingerprint(command: Command) -> str:
    """What a command id is bound to: SHA-256 of the validated command as canonical JSON
    (sorted keys, no white space), without the time the orchestrator stamped on it. Two
    bodies that validate to the same command (key order, ``"usd"`` and ``"USD"``) match."""
    canonical = json.dumps(
        command.model_dump(mode="json", exclude={"at"}),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_command(
    command_type: str, body: bytes, headers: Mapping[str, str], at: datetime
) -> tuple[Command, CommandContext]:
    """Turn a received message into a typed command, or raise a typed rejection."""
    command_id = command_id_of(headers)
    if command_type not in COMMAND_TYPES:
        raise UnknownCommand(f"unknown command type {command_type!r}", known=sorted(COMMAND_TYPES))
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidCommand("command body is not valid UTF-8 JSON") from None
    except RecursionError:  # a hostile body: it must be a rejection, not a redelivered bug
        raise InvalidCommand("command body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise InvalidCommand("command body must be a JSON object")
    payload = {**payload, "type": command_type, "at": at.isoformat()}
    if command_type == "create" and "session_id" not in payload:
        payload["session_id"] = derive_session_id(command_id)
    try:
        data = json.dumps(payload, allow_nan=False)
    except ValueError:  # json.loads takes NaN and Infinity; JSON has neither
        raise InvalidCommand("command body holds NaN or Infinity, which are not JSON") from None
    except RecursionError:
        raise InvalidCommand("command body is nested too deeply") from None
    try:
        # strict JSON mode: types as JSON has them (no "5000" for 5000), nested models too
        context = INPUT if command_type in CALLER_COMMANDS else None
        command = command_adapter.validate_json(data, strict=True, context=context)
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":  # json.loads took it: a lone surrogate
            raise InvalidCommand("command body holds a lone surrogate escape, not text") from None
        errors = [
            {"loc": list(err["loc"])[1:], "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        message = f"invalid {command_type} command: {errors[0]['msg']}"
        raise InvalidCommand(message, errors) from None
    correlation_id = headers.get(CORRELATION_ID) or command_id
    return command, CommandContext(
        command_id, correlation_id, headers.get(TRACEPARENT), fingerprint=fingerprint(command)
    )


def accepted_reply(command_id: str, result: Accepted) -> bytes:
    reply = AcceptedReply(
        command_id=command_id,
        session_id=result.session_id,
        sequence=result.sequence,
        appended=result.appended,
        duplicate=result.duplicate,
    )
    if (opened := result.opened) is not None:
        secret = opened.client_secret
        reply = reply.model_copy(
            update={
                "provider": opened.provider.value,
                "provider_session_id": opened.provider_session_id,
                "checkout_url": opened.checkout_url,
                "expires_at": opened.expires_at,
                "expiry_enforced_by": opened.expiry_enforced_by,
                "client_secret": secret.get_secret_value() if secret else None,
            }
        )
    return reply.model_dump_json().encode()


def rejected_reply(command_id: str | None, error: CheckoutError) -> bytes:
    return RejectedReply(command_id=command_id, error=error.to_dict()).model_dump_json().encode()


def parse_reply(data: bytes) -> Reply:
    raw = json.loads(data)
    if raw.get("status") == "accepted":
        return AcceptedReply.model_validate(raw)
    return RejectedReply.model_validate(raw)
