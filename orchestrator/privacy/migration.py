"""Events written before sealing: copy the stream into a new one, sealed.

Events of schema v1 (``requested``, ``completed``) hold customers in clear, in a stream
that denies deletes and purges. They cannot be sealed where they are; `seal_stream`
copies every message of the source stream, in order, into a new stream (its own name and
subject prefix, same partitions and flags), sealing each clear customer on the way with
the same `Sealer` the event store uses (one data subject per session, found by the
customer's reference or email). Headers are kept (event id, command id, correlation,
traceparent, fingerprint); each copy also says where it came from
(``Checkout-Copied-From: <source sequence>``), which makes the copy resumable: run it
again and it goes on after the last message copied.

The switch (docs/privacy.md): stop the writers, run the copy once more for the tail,
point ``CHECKOUT_EVENTS_STREAM`` / ``CHECKOUT_EVENTS_PREFIX`` at the new stream, rebuild
the four read models, start again, then delete the old stream (a stream that denies
message deletes can still be deleted as a whole).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import nats.js.errors
from nats.aio.client import Client as NatsClient

from events.codec import Headers, decode, encode
from orchestrator.errors import CheckoutError
from orchestrator.jetstream.streams import StreamLayout, ensure_streams
from orchestrator.privacy.sealing import Sealer, subject_of

__all__ = ["COPIED_FROM", "SealReport", "StreamCopyError", "seal_stream"]

COPIED_FROM = "Checkout-Copied-From"


class StreamCopyError(CheckoutError):
    """The copy cannot go on: the target is the source, or a message is unreadable."""

    code = "stream_copy_failed"


@dataclass(frozen=True, slots=True)
class SealReport:
    copied: int
    sealed: int
    skipped: int
    """already copied by an earlier run"""
    last_source_sequence: int


async def _last_copied(nc: NatsClient, target: StreamLayout) -> int:
    js = nc.jetstream()
    info = await js.stream_info(target.events_stream)
    if not info.state.last_seq:
        return 0
    last = await js.get_msg(target.events_stream, info.state.last_seq)
    return int((last.headers or {}).get(COPIED_FROM, 0))


async def seal_stream(
    nc: NatsClient,
    source: StreamLayout,
    target: StreamLayout,
    sealer: Sealer,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> SealReport:
    """Copy ``source``'s events into ``target``'s stream (created if missing), sealed."""
    if target.events_stream == source.events_stream or target.events_prefix == source.events_prefix:
        raise StreamCopyError("the target stream needs its own name and subject prefix")
    await ensure_streams(nc, target)
    js = nc.jetstream()
    head = (await js.stream_info(source.events_stream)).state.last_seq
    start = await _last_copied(nc, target)
    subjects: dict[str, str | None] = {}
    copied = sealed = 0
    for sequence in range(start + 1, head + 1):
        try:
            msg = await js.get_msg(source.events_stream, sequence)
        except nats.js.errors.NotFoundError:
            continue
        headers = dict(msg.headers or {})
        try:
            recorded = decode(msg.subject or "", msg.data or b"", headers, sequence)
        except ValueError as exc:
            raise StreamCopyError(f"message {sequence} does not decode: {exc}") from exc
        event = recorded.event
        session = event.session_id
        if session not in subjects:
            subjects[session] = subject_of([event])
        (copy,) = await sealer.seal(session, [event], subjects[session])
        subjects[session] = subjects[session] or subject_of([copy])
        sealed += copy is not event
        encoded = encode(
            copy,
            recorded.metadata,
            prefix=target.events_prefix,
            partitions=target.partitions,
            index=0,
        )
        original_id = headers.get(Headers.MSG_ID)
        if original_id:
            encoded.headers[Headers.MSG_ID] = original_id
        encoded.headers[COPIED_FROM] = str(sequence)
        ack = await js.publish(encoded.subject, encoded.payload, headers=encoded.headers)
        if ack.duplicate:
            raise StreamCopyError(f"message {sequence} is a duplicate in the target: {ack!r}")
        copied += 1
        if progress is not None:
            progress(sequence, head)
    return SealReport(copied, sealed, start, head)
