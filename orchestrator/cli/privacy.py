"""``checkout-orchestrator privacy ...``: customers' personal data (docs/privacy.md).

privacy forget --email E | --reference R   forget a customer (what POST /v1/customers/forget does)
privacy status                             data subjects, forgotten ones, forget requests
privacy seal-stream --to-stream S --to-prefix P   copy a stream of older, clear events, sealed
privacy rotate-kek --new-kek-file F        re-wrap every data key under a new KEK
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.bootstrap import connect_nats, privacy
from orchestrator.cli.common import console, endpoints_or_exit, load_settings, run
from orchestrator.client import CheckoutClient
from orchestrator.jetstream.connection import nats_options
from orchestrator.jetstream.streams import StreamLayout
from orchestrator.privacy.forgetting import ForgetResult
from orchestrator.privacy.keyring import KeyEncryptionKey
from orchestrator.privacy.migration import SealReport, seal_stream

__all__ = ["privacy_app"]

privacy_app = typer.Typer(help="Customers' personal data: forget, status, seal, rotate.")


@privacy_app.command("forget")
def forget(
    email: Annotated[str | None, typer.Option(help="the customer's email")] = None,
    reference: Annotated[str | None, typer.Option(help="the merchant's customer reference")] = None,
) -> None:
    """Forget one customer: their data subject's key is destroyed (needs a running
    commands role, which answers forget_customer)."""
    settings = load_settings()
    endpoints = endpoints_or_exit(settings)

    async def main() -> ForgetResult:
        async with await CheckoutClient.connect(
            endpoints.nats_url, settings.layout(), options=nats_options(settings)
        ) as client:
            return await client.forget_customer(email=email, customer_reference=reference)

    result = run(main())
    console.print(f"{result.status}: {len(result.subjects)} subject(s), "
                  f"{len(result.sessions)} session(s)")  # fmt: skip
    for ref in result.provider_sessions:
        console.print(
            f"  erase at {ref.provider}: {ref.provider_session_id} (session {ref.session_id})"
        )


@privacy_app.command("status")
def status() -> None:
    """How many data subjects are live and forgotten, and how many forgets were asked."""
    settings = load_settings()
    endpoints = endpoints_or_exit(settings)

    async def main() -> tuple[int, int, int]:
        async with privacy(settings, endpoints) as personal:
            row = await personal.keyring.pool.fetchrow(
                "SELECT count(*) FILTER (WHERE forgotten_at IS NULL) AS live, "
                "count(*) FILTER (WHERE forgotten_at IS NOT NULL) AS forgotten, "
                "(SELECT count(*) FROM forget_requests) AS requests FROM data_subjects"
            )
            return int(row["live"]), int(row["forgotten"]), int(row["requests"])

    live, forgotten, requests = run(main())
    console.print(f"data subjects: {live} live, {forgotten} forgotten; {requests} forget requests")


@privacy_app.command("seal-stream")
def seal_stream_command(
    to_stream: Annotated[str, typer.Option(help="name of the new, sealed event stream")],
    to_prefix: Annotated[str, typer.Option(help="its subject prefix, e.g. checkout.sealed")],
) -> None:
    """Copy the event stream into a new one with every customer sealed (events written
    before sealing hold them in clear). Resumable; docs/privacy.md says how to switch."""
    settings = load_settings()
    endpoints = endpoints_or_exit(settings)
    source = settings.layout()
    target = StreamLayout(
        events_stream=to_stream,
        events_prefix=to_prefix,
        partitions=source.partitions,
        commands_stream=source.commands_stream,
        commands_prefix=source.commands_prefix,
        duplicate_window_seconds=source.duplicate_window_seconds,
        replicas=source.replicas,
    )

    async def main() -> SealReport:
        nc = await connect_nats(endpoints.nats_url, "checkout-seal-stream", nats_options(settings))
        try:
            async with privacy(settings, endpoints) as personal:
                return await seal_stream(nc, source, target, personal.sealer)
        finally:
            await nc.drain()

    report = run(main())
    console.print(
        f"copied {report.copied} event(s) ({report.sealed} sealed, {report.skipped} copied "
        f"before) from {source.events_stream} to {to_stream}, up to sequence "
        f"{report.last_source_sequence}. Next: CHECKOUT_EVENTS_STREAM={to_stream} "
        f"CHECKOUT_EVENTS_PREFIX={to_prefix}, then rebuild the read models (docs/privacy.md)."
    )


@privacy_app.command("rotate-kek")
def rotate_kek(
    new_kek_file: Annotated[Path, typer.Option(help="file holding the new KEK (base64)")],
) -> None:
    """Re-wrap every live data key and the lookup key under a new key-encryption key;
    then point CHECKOUT_PRIVACY_KEK_FILE at the new file and restart."""
    settings = load_settings()
    endpoints = endpoints_or_exit(settings)
    new = KeyEncryptionKey.from_file(new_kek_file, "--new-kek-file")

    async def main() -> int:
        async with privacy(settings, endpoints) as personal:
            return await personal.keyring.rotate(new)

    count = run(main())
    console.print(
        f"{count} data key(s) re-wrapped; now set CHECKOUT_PRIVACY_KEK_FILE to the new file"
    )
