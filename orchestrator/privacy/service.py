"""The ``forget_customer`` command over NATS: request and reply on the layout's forget
subject (`StreamLayout.forget_subject`), outside the command stream, so the email asked
for is never stored in a stream.

Request: ``{"email": ...}`` or ``{"customer_reference": ...}``, header
``Checkout-Command-Id`` (the request id, recorded in ``forget_requests``). Reply: the
`ForgetResult` as JSON, or a rejection in the shape of the command replies.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from events.values import INPUT
from orchestrator.errors import CheckoutError, InvalidCommand
from orchestrator.jetstream.streams import StreamLayout
from orchestrator.jetstream.wire import command_id_of, rejected_reply
from orchestrator.privacy.forgetting import ForgetCustomer, ForgetResult, Forgetter

__all__ = ["parse_forget", "serve_forget"]

_log = logging.getLogger(__name__)
QUEUE = "checkout-privacy"


def parse_forget(body: bytes) -> ForgetCustomer:
    """The request, or `InvalidCommand` listing what is wrong (never echoing the input)."""
    try:
        return ForgetCustomer.model_validate_json(body, strict=True, context=INPUT)
    except ValidationError as exc:
        errors = [
            {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise InvalidCommand(
            f"invalid forget_customer command: {errors[0]['msg']}", errors
        ) from None


async def answer(forgetter: Forgetter, body: bytes, headers: Mapping[str, str]) -> bytes:
    request_id = None
    try:
        request_id = command_id_of(headers)
        result: ForgetResult = await forgetter.forget(parse_forget(body), request_id)
    except CheckoutError as exc:
        _log.info("forget_customer %s rejected: %s", request_id, exc.code)
        return rejected_reply(request_id, exc)
    _log.info("forget_customer %s: %s", request_id, result.status)
    return result.model_dump_json().encode()


async def serve_forget(nc: NatsClient, layout: StreamLayout, forgetter: Forgetter) -> Subscription:
    async def on_request(msg: Msg) -> None:
        reply = await answer(forgetter, msg.data, msg.headers or {})
        if msg.reply:
            await msg.respond(reply)

    return await nc.subscribe(layout.forget_subject, queue=QUEUE, cb=on_request)
