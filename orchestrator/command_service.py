"""The FastStream subscriber that takes commands off the durable work queue.

Each message is parsed, handled (`CommandHandler`), answered on its reply inbox, and
only then acknowledged: a crash between the reply and the ack redelivers the
command, which the handler recognises by its id and answers the same way again.
A rejection (bad input, illegal transition) is final and acknowledged; a fault of
our servers is negatively acknowledged and retried later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig

from orchestrator.errors import CheckoutError, InfrastructureError
from orchestrator.handling import CommandHandler
from orchestrator.streams import StreamLayout
from orchestrator.wire import (
    COMMAND_ID,
    REPLY_TO,
    accepted_reply,
    parse_command,
    rejected_reply,
)

__all__ = ["register_command_service"]

_log = logging.getLogger(__name__)

DURABLE = "checkout-orchestrator"
MAX_DELIVER = 5
RETRY_DELAY_SECONDS = 1.0


async def _undecoded(msg: NatsMessage) -> bytes:
    """The body as bytes: `parse_command` parses it and rejects hostile JSON (FastStream's
    own JSON decoding would raise on a deeply nested body before the handler runs, and the
    command would be redelivered as a bug instead of rejected)."""
    return bytes(msg.body)


def register_command_service(
    broker: NatsBroker,
    layout: StreamLayout,
    handler: CommandHandler,
    clock: Callable[[], datetime],
) -> None:
    prefix = f"{layout.commands_prefix}."

    @broker.subscriber(
        f"{layout.commands_prefix}.>",
        stream=JStream(layout.commands_stream, declare=False),
        durable=DURABLE,
        config=ConsumerConfig(
            ack_policy=JsAckPolicy.EXPLICIT, ack_wait=30, max_deliver=MAX_DELIVER
        ),
        pull_sub=PullSub(batch_size=32, timeout=1.0),
        ack_policy=AckPolicy.MANUAL,
        decoder=_undecoded,
        title="checkout commands",
        description="Checkout session commands; the reply goes to Checkout-Reply-To.",
    )
    async def on_command(msg: NatsMessage) -> None:
        raw = msg.raw_message
        headers = raw.headers or {}
        command_id = headers.get(COMMAND_ID)
        try:
            command, context = parse_command(
                raw.subject.removeprefix(prefix), raw.data, headers, clock()
            )
            reply = accepted_reply(context.command_id, await handler.handle(command, context))
        except InfrastructureError:
            _log.warning("command %s deferred: servers unavailable", command_id, exc_info=True)
            await msg.nack(delay=RETRY_DELAY_SECONDS)
            return
        except CheckoutError as exc:
            _log.info("command %s rejected: %s", command_id, exc.code)
            reply = rejected_reply(command_id, exc)
        except Exception:  # noqa: BLE001 - a bug must not stall the queue; logged, retried
            if raw.metadata.num_delivered < MAX_DELIVER:
                _log.exception("command %s failed; will be redelivered", command_id)
                await msg.nack(delay=RETRY_DELAY_SECONDS)
                return
            _log.exception("command %s failed on its last delivery", command_id)
            reply = rejected_reply(command_id, CheckoutError("internal error"))
        if reply_to := headers.get(REPLY_TO):
            await broker.publish(reply, subject=reply_to)
        await msg.ack()
