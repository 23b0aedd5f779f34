"""The FastStream subscriber that takes commands off the durable work queue.

Each message is parsed, handled (`CommandHandler`), answered on its reply inbox, and
only then acknowledged: a crash between the reply and the ack redelivers the
command, which the handler recognises by its id and answers the same way again.
A rejection (bad input, illegal transition) is final and acknowledged; a fault of
our servers is negatively acknowledged and retried later, with a growing delay and
without a limit (the consumer's ``max_deliver`` is unlimited: an outage of the event
store, an election say, must not make the queue give up on a command). Only a bug in
our code is bounded: after ``BUG_ATTEMPTS`` deliveries it is answered ``internal error``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import nats.js.errors
from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig

from orchestrator.errors import CheckoutError, InfrastructureError
from orchestrator.jetstream.streams import StreamLayout
from orchestrator.jetstream.wire import (
    COMMAND_ID,
    REPLY_TO,
    accepted_reply,
    parse_command,
    rejected_reply,
)
from orchestrator.services.handling import CommandHandler

__all__ = ["register_command_service", "upgrade_consumer"]

_log = logging.getLogger(__name__)

DURABLE = "checkout-orchestrator"
BUG_ATTEMPTS = 5
RETRY_DELAY_SECONDS = 0.5
MAX_RETRY_DELAY_SECONDS = 5.0
DEFAULT_WORKERS = 64


async def _undecoded(msg: NatsMessage) -> NatsMessage:
    """The message itself: `parse_command` parses the body and rejects hostile JSON
    (FastStream's own JSON decoding would raise on a deeply nested body before the handler
    runs, and the command would be redelivered as a bug instead of rejected). With the
    broker's ``apply_types=False`` the handler receives it as is: no dependency injection
    per command."""
    return msg


async def upgrade_consumer(nc: NatsClient, layout: StreamLayout) -> bool:
    """Bring a command consumer created by an older version up to this one's delivery
    rules (unlimited redelivery of server faults); FastStream creates a missing one.
    Returns whether it changed anything."""
    js = nc.jetstream()
    try:
        info = await js.consumer_info(layout.commands_stream, DURABLE)
    except nats.js.errors.NotFoundError:
        return False
    config = info.config
    if config.max_deliver in (-1, None):
        return False
    _log.warning("command consumer %s: max_deliver %s -> unlimited", DURABLE, config.max_deliver)
    config.max_deliver = -1
    await js.add_consumer(layout.commands_stream, config)
    return True


def _backoff(deliveries: int | None) -> float:
    """0.5 s, 1 s, 2 s, 4 s, then 5 s between deliveries of a command our servers
    could not take."""
    exponent = max(0, (deliveries or 1) - 1)
    return min(MAX_RETRY_DELAY_SECONDS, RETRY_DELAY_SECONDS * (1 << min(exponent, 10)))


def register_command_service(
    broker: NatsBroker,
    layout: StreamLayout,
    handler: CommandHandler,
    clock: Callable[[], datetime],
    replies: NatsClient,
    *,
    workers: int = DEFAULT_WORKERS,
) -> None:
    """``replies``: the connection replies go out on; ``workers``: commands handled at
    once (a concurrency conflict between two commands of one session is retried)."""
    prefix = f"{layout.commands_prefix}."

    @broker.subscriber(
        f"{layout.commands_prefix}.>",
        stream=JStream(layout.commands_stream, declare=False),
        durable=DURABLE,
        config=ConsumerConfig(ack_policy=JsAckPolicy.EXPLICIT, ack_wait=30, max_deliver=-1),
        pull_sub=PullSub(batch_size=workers, timeout=1.0),
        max_workers=workers,
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
            await msg.nack(delay=_backoff(raw.metadata.num_delivered))
            return
        except CheckoutError as exc:
            _log.info("command %s rejected: %s", command_id, exc.code)
            reply = rejected_reply(command_id, exc)
        except Exception:  # noqa: BLE001 - a bug must not stall the queue; logged, retried
            if raw.metadata.num_delivered < BUG_ATTEMPTS:
                _log.exception("command %s failed; will be redelivered", command_id)
                await msg.nack(delay=RETRY_DELAY_SECONDS)
                return
            _log.exception("command %s failed on its last delivery", command_id)
            reply = rejected_reply(command_id, CheckoutError("internal error"))
        if reply_to := headers.get(REPLY_TO):
            await replies.publish(reply_to, reply)
        await msg.ack()
