# ruff: noqa: INP001 - a script run by path (python deploy/render_streams.py), not a package
"""Render the JetStream stream and consumer configuration of a deployment, from the code.

The orchestrator creates (and checks) its streams itself at start-up
(``orchestrator.jetstream.streams.ensure_streams``); these files are the same configuration as
reviewable JSON, in the JetStream API's own format, for operators who create the streams
ahead of the orchestrator (``nats stream add --config``, ``nats consumer add --config``) and
for review. They are generated, never edited by hand:

    python deploy/render_streams.py --replicas 3            # rewrite deploy/nats/streams/
    python deploy/render_streams.py --replicas 3 --check    # exit 1 if they drifted

Sources: ``events_stream_config`` / ``commands_stream_config``
(``orchestrator.jetstream.streams``) and
the durable consumer that ``orchestrator.jetstream.command_service`` subscribes with
(``consumer_config``). Names are the defaults of ``orchestrator.settings``
(``CHECKOUT`` / ``CHECKOUT_COMMANDS``); the environment is not read, so the output is the
same everywhere. ``tests/deploy/test_streams_as_code.py`` fails when the committed files and
the code disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nats.js.api import ConsumerConfig

from orchestrator.jetstream.command_service import DURABLE, consumer_config
from orchestrator.jetstream.streams import (
    StreamLayout,
    commands_stream_config,
    events_stream_config,
)

__all__ = ["command_consumer_config", "render", "render_layout", "rendered_files"]

STREAMS_DIR = Path(__file__).resolve().parent / "nats" / "streams"


def command_consumer_config(layout: StreamLayout) -> ConsumerConfig:
    """The durable pull consumer of the command workers, as nats-py creates it.

    The worker passes `consumer_config()` to ``pull_subscribe``, which sets the filter
    subject and the durable name before adding it; the same is done here.
    """
    config = consumer_config()
    config.filter_subject = f"{layout.commands_prefix}.>"
    config.name = DURABLE
    config.durable_name = DURABLE
    return config


def render(replicas: int) -> dict[str, dict[str, Any]]:
    """File name -> JSON document, for a deployment whose streams have ``replicas`` replicas."""
    return render_layout(StreamLayout(replicas=replicas))


def render_layout(layout: StreamLayout) -> dict[str, dict[str, Any]]:
    """File name -> JSON document for any layout (the tests use their own stream names)."""
    consumer = command_consumer_config(layout)
    return {
        f"{layout.events_stream}.json": events_stream_config(layout).as_dict(),
        f"{layout.commands_stream}.json": commands_stream_config(layout).as_dict(),
        f"{layout.commands_stream}.consumer.{consumer.durable_name}.json": consumer.as_dict(),
    }


def rendered_files(replicas: int) -> dict[str, str]:
    """File name -> exact file text (sorted keys, two-space indent, final newline)."""
    return {
        name: json.dumps(document, indent=2, sort_keys=True) + "\n"
        for name, document in render(replicas).items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=3, help="stream replicas (default 3)")
    parser.add_argument("--out", type=Path, default=STREAMS_DIR, help="output directory")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on drift")
    args = parser.parse_args(argv)
    out: Path = args.out
    drifted = []
    for name, text in rendered_files(args.replicas).items():
        path = out / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        drifted.append(name)
        if not args.check:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    verb = "differ from the code" if args.check else "written"
    for name in drifted:
        sys.stdout.write(f"{out / name}: {verb}\n")
    return 1 if args.check and drifted else 0


if __name__ == "__main__":
    raise SystemExit(main())
