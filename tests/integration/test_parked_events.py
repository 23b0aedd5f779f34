"""Parked events as an alarm and a tool: seen (HTTP operator route, metric), then applied
again after a fix with ``projections replay-parked``, each exactly once.

The fault is real: a trigger on the sessions table refuses one session's rows with a
data error (as a broken projection would), so the projector parks its events while the
other projections apply them. Dropping the trigger is the fix.
"""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from orchestrator.bootstrap import Endpoints, read_side
from orchestrator.telemetry import build_telemetry
from projections import ParkedEvents, replay_parked
from tests.integration.test_projections_cli import _cli, _settings
from tests.support.builders import requested, routed
from tests.support.projections import projection_env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.parked_expected  # this test parks events on purpose

SID = "replay_me_1"

_BREAK = f"""
CREATE FUNCTION refuse_replay_me() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.session_id = '{SID}' THEN
        RAISE EXCEPTION 'broken projection' USING ERRCODE = 'data_exception';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_replay_me BEFORE INSERT OR UPDATE ON rm_sessions_v1
    FOR EACH ROW EXECUTE FUNCTION refuse_replay_me();
"""
_FIX = "DROP TRIGGER refuse_replay_me ON rm_sessions_v1"


@pytest.fixture
async def env(nats_url, database_url, stream_names):
    async with projection_env(nats_url, database_url, stream_names) as environment:
        yield environment


def _parked_metric(reader: InMemoryMetricReader) -> int:
    data = reader.get_metrics_data()
    return sum(
        point.value
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "checkout.projection.parked"
        for point in metric.data.data_points
    )


async def test_parked_events_are_shown_counted_and_replayed_once_after_the_fix(env, tmp_path):
    reader = InMemoryMetricReader()
    endpoints = Endpoints(env.nats_url, env.dsn, embedded_nats=False, embedded_postgres=False)
    telemetry = build_telemetry(metric_readers=[reader])
    try:
        async with (
            read_side(_settings(env), endpoints, telemetry=telemetry) as side,
            httpx.AsyncClient(base_url=side.http_url, timeout=10) as http,
        ):
            await env.pool.execute(_BREAK)
            last = await env.append(SID, [requested(SID), routed(SID)], 0)

            async def listed():
                body = (await http.get("/v1/operator/parked-events")).json()
                return body if body["count"] == 2 else None

            shown = await wait_until(listed, 15, what="the parked events listed")
            await env.wait_caught_up()
            assert {e["event_type"] for e in shown["data"]} == {"requested", "routed"}
            assert {e["projection"] for e in shown["data"]} == {"sessions"}
            assert "broken projection" in shown["data"][0]["error"]
            assert _parked_metric(reader) == 2

            still_broken = _cli(env, tmp_path, "projections", "replay-parked")
            assert still_broken.returncode == 1, still_broken.stdout + still_broken.stderr
            assert "replayed: 0" in still_broken.stdout
            assert await ParkedEvents(env.pool).count() == 2

            await env.pool.execute(_FIX)
            fixed = _cli(env, tmp_path, "projections", "replay-parked")
            assert fixed.returncode == 0, fixed.stdout + fixed.stderr
            assert "replayed: 2" in fixed.stdout

            session = await side.reads.session(SID, min_sequence=last)
            assert session.last_sequence == last
            assert (await http.get("/v1/operator/parked-events")).json() == {"count": 0, "data": []}
            again = await replay_parked(env.pool)  # nothing is applied twice
            assert (again.replayed, again.still_parked) == (0, [])
            timeline = await http.get(f"/v1/checkout-sessions/{SID}/events")
            assert len(timeline.json()) == 2  # the timeline applied them once, at the time
    finally:
        telemetry.shutdown()


async def test_the_operator_route_refuses_bad_filters(env):
    endpoints = Endpoints(env.nats_url, env.dsn, embedded_nats=False, embedded_postgres=False)
    async with (
        read_side(_settings(env), endpoints) as side,
        httpx.AsyncClient(base_url=side.http_url, timeout=10) as http,
    ):
        for query in ("limit=0", "limit=100000", "projection=Robert');--"):
            response = await http.get(f"/v1/operator/parked-events?{query}")
            assert response.status_code == 400, response.text
            assert response.json()["code"] == "invalid_query"
