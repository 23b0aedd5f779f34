"""A real 3-node NATS cluster on loopback (``EmbeddedNatsCluster``) runs the event store.

The failover under node loss is in ``test_cluster_failover.py`` (slow); here: the cluster
forms, the event stream is created at 3 replicas by the orchestrator's own start-up check,
and the event store appends and loads through it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import nats
import pytest
from nats.aio.client import Client

from orchestrator.bootstrap import Endpoints, connect_nats
from orchestrator.cli.serve import Role, _serve
from orchestrator.client import CheckoutClient
from orchestrator.embedded import EmbeddedNatsCluster
from orchestrator.jetstream.event_store import EventStore
from orchestrator.jetstream.streams import StreamLayout
from orchestrator.settings import Settings
from tests.support.builders import lifecycle, metadata, new_session_id
from tests.support.infra import ensure_streams_on_new_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNatsCluster]:
    with EmbeddedNatsCluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
async def nc(cluster: EmbeddedNatsCluster) -> AsyncIterator[Client]:
    connection = await nats.connect(cluster.urls, connect_timeout=5)
    yield connection
    await connection.close()


def test_nodes_are_distinct_and_configured_for_durability(cluster):
    names = [node.server_name for node in cluster.nodes]
    assert names == ["checkout-n1", "checkout-n2", "checkout-n3"]
    assert len({node.port for node in cluster.nodes}) == 3
    assert len({node.store_dir for node in cluster.nodes}) == 3
    assert cluster.url == ",".join(cluster.urls)
    routes = {route for node in cluster.nodes for route in (node.cluster or ()).routes}
    for node in cluster.nodes:
        assert node.is_running()
        text = node.config_text()
        assert 'sync_interval: "always"' in text
        assert node.cluster is not None
        assert set(node.cluster.routes) == routes
        assert cluster.node(node.server_name) is node
        assert node.server_version is not None


async def test_event_stream_at_3_replicas_appends_and_loads(nc, stream_names):
    layout = StreamLayout(
        events_stream=stream_names.stream,
        events_prefix=stream_names.events_prefix,
        commands_stream=stream_names.commands_stream,
        commands_prefix=stream_names.commands_prefix,
        replicas=3,
    )
    await ensure_streams_on_new_cluster(nc, layout)
    info = await nc.jetstream().stream_info(layout.events_stream)
    assert info.config.num_replicas == 3
    assert info.cluster is not None
    assert info.cluster.leader is not None
    assert len(info.cluster.replicas or []) == 2
    store = EventStore(nc, layout)
    try:
        sid = new_session_id()
        events = lifecycle(sid)
        appended = await store.append(sid, events[:1], metadata(), expected_version=0)
        rest = await store.append(
            sid, events[1:], metadata(n=len(events) - 1), expected_version=appended.last_sequence
        )
        history = await store.load(sid)
        assert [e.event.type for e in history.events] == [e.type for e in events]
        assert history.version == rest.last_sequence
    finally:
        await store.close()


async def test_a_nats_url_listing_every_server_connects(cluster, nc, stream_names):
    """NATS_URL as deploy/ sets it, every server comma-separated: the connection is on one
    of them and knows all three (to fail over to), and the client reads through it what was
    written to the cluster through another connection."""
    every_server = {urlsplit(url).netloc for url in cluster.urls}
    direct = await connect_nats(cluster.url, "deploy-test")
    try:
        assert direct.connected_url is not None
        assert direct.connected_url.netloc in every_server
        assert {server.netloc for server in direct.servers} >= every_server
        assert (await direct.jetstream().account_info()).streams >= 0
    finally:
        await direct.close()

    layout = StreamLayout(
        events_stream=stream_names.stream,
        events_prefix=stream_names.events_prefix,
        commands_stream=stream_names.commands_stream,
        commands_prefix=stream_names.commands_prefix,
        replicas=3,
    )
    await ensure_streams_on_new_cluster(nc, layout)
    store = EventStore(nc, layout)
    sid = new_session_id()
    try:
        written = await store.append(sid, lifecycle(sid)[:1], metadata(), expected_version=0)
    finally:
        await store.close()
    async with await CheckoutClient.connect(cluster.url, layout) as client:
        history = await client.history(sid)
    assert [(r.session_id, r.sequence) for r in history] == [(sid, written.last_sequence)]


@pytest.mark.parametrize(
    "role",
    [Role.COMMANDS, Role.PROJECTORS, Role.API],
)
async def test_each_role_starts_with_the_deploy_nats_url(
    role, cluster, nc, stream_names, database_url, tmp_path
):
    """`up --role R` with NATS_URL as deploy/ sets it: every server, comma-separated."""
    settings = Settings(
        nats_url=cluster.url,
        database_url=database_url,
        data_dir=tmp_path,
        events_stream=stream_names.stream,
        events_prefix=stream_names.events_prefix,
        commands_stream=stream_names.commands_stream,
        commands_prefix=stream_names.commands_prefix,
        stream_replicas=3,
        http_port=0,
    )
    await ensure_streams_on_new_cluster(nc, settings.layout())
    endpoints = Endpoints(cluster.url, database_url, embedded_nats=False, embedded_postgres=False)
    await _serve(settings, endpoints, once=True, sandbox=False, role=role)
