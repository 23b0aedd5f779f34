"""The JetStream streams we own, created and checked at start-up with nats-py.

FastStream's ``JStream`` cannot set the safety flags the event stream needs, so both
streams are declared here and FastStream binds to them with ``declare=False``.

- ``CHECKOUT`` (events): file storage, no age/size limits, discard new, deny delete
  and purge, no rollups, direct get and atomic batches on, a duplicate window of
  minutes. An existing stream with weaker flags is refused, never silently "fixed".
- ``CHECKOUT_COMMANDS`` (commands): a work queue, file storage, so a command sent
  while no orchestrator runs waits for one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from events.subjects import DEFAULT_PARTITIONS
from orchestrator.errors import StreamMisconfigured, UnsupportedServer

__all__ = [
    "MIN_SERVER_VERSION",
    "StreamLayout",
    "check_server",
    "commands_stream_config",
    "ensure_streams",
    "events_stream_config",
]

MIN_SERVER_VERSION = (2, 12, 0)


@dataclass(frozen=True, slots=True)
class StreamLayout:
    """Names of the streams and subjects; tests use unique ones per test."""

    events_stream: str = "CHECKOUT"
    events_prefix: str = "checkout.events"
    partitions: int = DEFAULT_PARTITIONS
    commands_stream: str = "CHECKOUT_COMMANDS"
    commands_prefix: str = "checkout.commands"
    duplicate_window_seconds: float = 300.0
    replicas: int = 1

    @property
    def forget_subject(self) -> str:
        """Core NATS subject of ``forget_customer`` (request/reply; in no stream):
        ``checkout.privacy.forget_customer`` beside ``checkout.commands``."""
        parent, _, _ = self.commands_prefix.rpartition(".")
        if not parent:
            return f"{self.commands_prefix}_privacy.forget_customer"
        return f"{parent}.privacy.forget_customer"


def parse_version(text: str) -> tuple[int, int, int]:
    core = text.split("-", 1)[0].split("+", 1)[0]
    major, minor, patch = (int(part) for part in core.split(".")[:3])
    return major, minor, patch


def check_server(server_info: dict[str, Any]) -> None:
    """Refuse a server that cannot give us atomic batches (older than 2.12) or JetStream."""
    version = str(server_info.get("version", "0.0.0"))
    try:
        parsed = parse_version(version)
    except ValueError:
        raise UnsupportedServer(f"cannot read nats-server version {version!r}") from None
    if parsed < MIN_SERVER_VERSION:
        need = ".".join(map(str, MIN_SERVER_VERSION))
        raise UnsupportedServer(
            f"nats-server {version} is too old: the checkout orchestrator needs {need} or newer "
            "(atomic batch publish, ADR-50). Unset NATS_URL to use the embedded server, "
            "or upgrade the server.",
            version=version,
        )
    if not server_info.get("jetstream", False):
        raise UnsupportedServer(
            f"nats-server {version} has JetStream disabled: start it with -js", version=version
        )


def events_stream_config(layout: StreamLayout) -> StreamConfig:
    return StreamConfig(
        name=layout.events_stream,
        subjects=[f"{layout.events_prefix}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        max_age=0,
        max_msgs=-1,
        max_bytes=-1,
        num_replicas=layout.replicas,
        duplicate_window=layout.duplicate_window_seconds,
        deny_delete=True,
        deny_purge=True,
        allow_rollup_hdrs=False,
        allow_direct=True,
        allow_atomic=True,
    )


def commands_stream_config(layout: StreamLayout) -> StreamConfig:
    return StreamConfig(
        name=layout.commands_stream,
        subjects=[f"{layout.commands_prefix}.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        num_replicas=layout.replicas,
        duplicate_window=120.0,
    )


def _unsafe_differences(actual: StreamConfig, wanted: StreamConfig) -> list[str]:
    problems = [
        f"{flag} is {getattr(actual, flag)!r}, must be {getattr(wanted, flag)!r}"
        for flag in ("storage", "deny_delete", "deny_purge", "allow_direct", "allow_atomic")
        if getattr(actual, flag) != getattr(wanted, flag)
    ]
    if actual.allow_rollup_hdrs:
        problems.append("allow_rollup_hdrs is on: a rollup could erase a session's history")
    limited = (actual.max_age or 0) > 0 or (actual.max_msgs or -1) > 0
    if (limited or (actual.max_bytes or -1) > 0) and actual.discard != DiscardPolicy.NEW:
        problems.append("limits with discard=old would silently drop old events")
    if actual.subject_transform is not None:
        problems.append("a subject transform would defeat the per-session concurrency check")
    if sorted(actual.subjects or []) != sorted(wanted.subjects or []):
        problems.append(f"subjects are {actual.subjects}, expected {wanted.subjects}")
    return problems


async def _ensure(js: Any, wanted: StreamConfig, *, strict: bool) -> None:
    try:
        info = await js.stream_info(wanted.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(wanted)
        return
    if strict and (problems := _unsafe_differences(info.config, wanted)):
        raise StreamMisconfigured(
            f"stream {wanted.name} exists with unsafe settings: " + "; ".join(problems),
            stream=wanted.name,
            problems=problems,
        )


async def ensure_streams(nc: NatsClient, layout: StreamLayout) -> None:
    """Check the server, then create both streams or verify the existing ones."""
    check_server(nc._server_info)  # noqa: SLF001 - nats-py keeps INFO here only
    js = nc.jetstream()
    try:
        await _ensure(js, events_stream_config(layout), strict=True)
        await _ensure(js, commands_stream_config(layout), strict=False)
    except nats.js.errors.ServiceUnavailableError as exc:
        raise UnsupportedServer(f"JetStream is not available on this server: {exc}") from exc
    except nats.errors.TimeoutError as exc:
        raise UnsupportedServer(f"JetStream did not answer: {exc}") from exc
