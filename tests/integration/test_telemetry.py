"""OpenTelemetry traces (gateway.telemetry), collected by the SDK's in-memory exporter.

The caller's W3C `traceparent` is honoured; the propose path's spans (authenticate, evaluate,
sign, commit, respond), the storage's and the chain writer's batch are recorded with the action
and request ids; with no OTEL_* variable, nothing is traced and the storage is not wrapped.
"""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway import telemetry
from gateway.app import create_app
from tests.integration.helpers import bearer, make_world, pay

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    telemetry.configure(exporter)
    try:
        yield exporter
    finally:
        telemetry.configure(None)


async def test_a_proposal_is_traced_under_the_callers_traceparent(backend, spans):
    app = create_app(backend.settings())
    async with AsyncTestClient(app=app) as client:
        client.app_state = app.state
        world = await make_world(client)
        spans.clear()
        headers = {
            **bearer(world.agent_token),
            "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
            "X-Request-ID": "req-trace-1",
        }
        r = await client.post(f"/v1/agents/{world.agent}/propose", json=pay(), headers=headers)
        assert r.status_code == 201, r.text
        action_id = r.json()["action_id"]

    finished = spans.get_finished_spans()
    traced = [s for s in finished if format(s.context.trace_id, "032x") == TRACE_ID]
    by_name = {s.name: s for s in traced}
    server = by_name["POST /v1/agents/{agent_id}/propose"]
    assert format(server.parent.span_id, "016x") == PARENT_ID  # a child of the caller's span
    assert server.attributes["verdict.request_id"] == "req-trace-1"
    assert server.attributes["verdict.action_id"] == action_id
    assert server.attributes["verdict.decision"] == "ALLOW"
    assert server.attributes["http.route"] == "/v1/agents/{agent_id}/propose"
    assert server.attributes["http.response.status_code"] == 201
    for name in ("authenticate", "evaluate", "sign", "commit", "respond"):
        assert name in by_name, (name, sorted(by_name))
        assert by_name[name].parent.span_id == server.context.span_id, name
    assert by_name["sign"].attributes["verdict.action_id"] == action_id
    # the chain writer's batch: a trace of its own, linked to the request's commit span
    commit = by_name["commit"]
    batches = [s for s in finished if s.name == "chain_writer.batch"]
    linked = [b for b in batches if any(link.context.span_id == commit.context.span_id for link in b.links)]
    assert len(linked) == 1
    batch = linked[0]
    assert batch.parent is None and batch.context.trace_id != server.context.trace_id
    storage = [
        s for s in finished if s.name.startswith("db.") and s.context.trace_id == batch.context.trace_id
    ]
    assert storage, "the batch's own storage span"
    assert storage[0].attributes["db.system"] == backend.name


async def test_an_invalid_traceparent_starts_a_new_trace(backend, spans):
    app = create_app(backend.settings())
    async with AsyncTestClient(app=app) as client:
        r = await client.get("/health", headers={"traceparent": "00-zz-not-a-trace-01"})
        assert r.status_code == 200
    (server,) = [s for s in spans.get_finished_spans() if s.name == "GET /health"]
    assert server.parent is None
    assert server.attributes["http.response.status_code"] == 200


async def test_without_otel_variables_nothing_is_traced(backend, monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    app = create_app(backend.settings())
    assert not telemetry.enabled()
    assert telemetry.span("x") is telemetry.span("y")  # the one shared null context
    async with AsyncTestClient(app=app) as client:
        assert (await client.get("/health")).status_code == 200
        assert not isinstance(app.state.db, telemetry.TracedDatabase)


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
    ],
)
def test_the_standard_variables_choose_the_exporter(environ, wanted):
    assert telemetry.wanted_exporter(environ) == wanted


def test_an_unsupported_otlp_protocol_is_refused():
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    with pytest.raises(ValueError, match="http/protobuf"):
        telemetry.configure_from_env(env)
    assert not telemetry.enabled()
