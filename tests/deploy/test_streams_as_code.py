"""deploy/nats/streams/*.json are generated from the code and never drift from it.

The committed files must equal what ``deploy/render_streams.py`` renders from
``orchestrator.jetstream.streams`` and ``orchestrator.jetstream.command_service``; and what
those functions
render must be what the running orchestrator really creates on a server.
"""

from __future__ import annotations

import json
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig

from orchestrator.bootstrap import orchestrator
from orchestrator.jetstream.command_service import DURABLE
from orchestrator.jetstream.streams import StreamLayout, ensure_streams
from orchestrator.settings import Settings
from tests.support.builders import layout_for
from tests.support.deploy import DEPLOY, STREAMS, load_script

render_streams = load_script(DEPLOY / "render_streams.py")


def test_committed_files_are_what_the_code_renders():
    rendered: dict[str, str] = render_streams.rendered_files(3)
    committed = {path.name: path.read_text(encoding="utf-8") for path in STREAMS.glob("*.json")}
    assert committed == rendered, "run: python deploy/render_streams.py --replicas 3"


def test_check_mode_agrees(capsys):
    assert render_streams.main(["--replicas", "3", "--check"]) == 0
    assert capsys.readouterr().out == ""


def test_check_mode_reports_drift(tmp_path, capsys):
    for path in STREAMS.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    assert render_streams.main(["--replicas", "5", "--check", "--out", str(tmp_path)]) == 1
    assert "CHECKOUT.json: differ from the code" in capsys.readouterr().out


def test_streams_are_replicated_three_times_with_the_event_store_flags():
    events = json.loads((STREAMS / "CHECKOUT.json").read_text(encoding="utf-8"))
    commands = json.loads((STREAMS / "CHECKOUT_COMMANDS.json").read_text(encoding="utf-8"))
    assert events["num_replicas"] == commands["num_replicas"] == 3
    assert events["subjects"] == ["checkout.events.>"]
    assert (events["storage"], events["discard"], events["max_age"]) == ("file", "new", 0)
    for flag in ("deny_delete", "deny_purge", "allow_direct", "allow_atomic"):
        assert events[flag] is True, flag
    assert events["allow_rollup_hdrs"] is False
    assert (commands["retention"], commands["storage"]) == ("workqueue", "file")


def test_the_consumer_is_the_command_services_durable():
    consumer = json.loads(
        (STREAMS / f"CHECKOUT_COMMANDS.consumer.{DURABLE}.json").read_text(encoding="utf-8")
    )
    assert consumer["durable_name"] == consumer["name"] == DURABLE
    assert consumer["filter_subject"] == "checkout.commands.>"
    assert consumer["ack_policy"] == "explicit"


def _differences(wanted: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any]:
    return {k: (v, actual.get(k)) for k, v in wanted.items() if actual.get(k) != v}


async def test_the_running_orchestrator_creates_exactly_the_rendered_config(nats_url, stream_names):
    layout = layout_for(stream_names)  # one server here: replicas 1
    settings = Settings(
        nats_url=nats_url,
        events_stream=layout.events_stream,
        events_prefix=layout.events_prefix,
        commands_stream=layout.commands_stream,
        commands_prefix=layout.commands_prefix,
        stream_replicas=layout.replicas,
    )
    wanted = render_streams.render_layout(settings.layout())
    async with orchestrator(settings, nats_url) as running:
        js = running.nc.jetstream()
        events = (await js.stream_info(layout.events_stream)).config.as_dict()
        commands = (await js.stream_info(layout.commands_stream)).config.as_dict()
        consumer = (await js.consumer_info(layout.commands_stream, DURABLE)).config.as_dict()
        try:
            assert _differences(wanted[f"{layout.events_stream}.json"], events) == {}
            assert _differences(wanted[f"{layout.commands_stream}.json"], commands) == {}
            name = f"{layout.commands_stream}.consumer.{DURABLE}.json"
            assert _differences(wanted[name], consumer) == {}
        finally:
            await js.delete_stream(layout.commands_stream)
            await js.delete_stream(layout.events_stream)


async def test_streams_created_from_the_json_pass_the_orchestrators_check(nats_url, stream_names):
    """An operator's `nats stream add --config CHECKOUT.json` is accepted at start-up."""
    layout = layout_for(stream_names)
    documents = render_streams.render(3)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        for name, stream, prefix in (
            ("CHECKOUT.json", layout.events_stream, layout.events_prefix),
            ("CHECKOUT_COMMANDS.json", layout.commands_stream, layout.commands_prefix),
        ):
            config = StreamConfig.from_response(dict(documents[name]))
            config.name, config.subjects, config.num_replicas = stream, [f"{prefix}.>"], 1
            await js.add_stream(config)
        await ensure_streams(nc, layout)  # raises StreamMisconfigured on any unsafe flag
    finally:
        for stream in (layout.events_stream, layout.commands_stream):
            await js.delete_stream(stream)
        await nc.close()


@pytest.mark.parametrize("replicas", [1, 3, 5])
def test_rendering_follows_the_replicas(replicas):
    documents = render_streams.render(replicas)
    layout = StreamLayout(replicas=replicas)
    assert documents[f"{layout.events_stream}.json"]["num_replicas"] == replicas
    assert documents[f"{layout.commands_stream}.json"]["num_replicas"] == replicas
