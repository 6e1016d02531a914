"""Request ids, the access log, and what never reaches a client or a log line."""

from __future__ import annotations

import json
import logging
import re

import pytest
from litestar import Litestar, Request, get
from litestar.testing import AsyncTestClient

from gateway.settings import Settings
from gateway.tracing import ACCESS_LOGGER, Tracing, context_of
from tests.integration.helpers import bearer, make_world, pay
from tests.integration.process import GatewayProcess

GENERATED_ID = re.compile(r"[A-Za-z0-9_-]{16,32}")
ACCESS_FIELDS = {"time", "request_id", "method", "path", "status", "duration_ms", "client"}


def access_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]


async def test_a_sane_request_id_is_echoed_on_answers_and_problems(client):
    world = await make_world(client)
    sane = "req-2026.11_30-" + "a" * 113  # 128 characters
    r = await client.post(
        f"/v1/agents/{world.agent}/propose",
        json=pay(),
        headers={**bearer(world.agent_token), "X-Request-ID": sane},
    )
    assert (r.status_code, r.headers["x-request-id"]) == (201, sane)
    problems = [
        await client.get("/v1/actions/act_nope", headers={**bearer(world.auditor), "X-Request-ID": "a1"}),
        await client.get("/v1/nowhere", headers={"X-Request-ID": "a1"}),  # no route
        await client.put("/v1/keys", headers={"X-Request-ID": "a1"}),  # 405
        await client.get("/v1/actions", headers={"X-Request-ID": "a1"}),  # 401
        await client.get("/v1/actions?limit=nope", headers={**bearer(world.auditor), "X-Request-ID": "a1"}),
    ]
    for r in problems:
        assert r.status_code >= 400
        assert r.headers["content-type"].startswith("application/problem+json"), r.text
        assert r.headers["x-request-id"] == "a1"
        assert r.json()["request_id"] == "a1" and r.json()["code"], r.text


@pytest.mark.parametrize(
    "offered",
    ["", "x" * 129, "has space", "new\nline", 'quote"', "ünï", "a/b", "${jndi:ldap://x}", "a,b"],
)
async def test_an_unusable_request_id_is_replaced(client, offered):
    r = await client.get("/health", headers={"X-Request-ID": offered.encode("utf-8")})
    assert r.status_code == 200
    assert GENERATED_ID.fullmatch(r.headers["x-request-id"])
    assert r.headers["x-request-id"] != offered


async def test_every_answer_gets_a_fresh_request_id(client):
    ids = {(await client.get("/health")).headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20 and all(GENERATED_ID.fullmatch(i) for i in ids)
    r = await client.post("/v1/tenants", content=b"x" * 70_000, headers={"Content-Type": "application/json"})
    assert r.status_code in (401, 413) and GENERATED_ID.fullmatch(r.json()["request_id"])


async def test_one_access_line_per_request_with_the_route_template_and_the_caller(client, caplog):
    world = await make_world(client)
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    caplog.clear()
    r = await client.post(
        f"/v1/agents/{world.agent}/propose",
        json=pay(),
        headers={**bearer(world.agent_token), "X-Request-ID": "trace-1", "User-Agent": "bot/1.0"},
    )
    assert r.status_code == 201
    await client.get(f"/v1/actions?tenant_id={world.tenant}&cursor=secret-ish", headers=bearer(world.auditor))
    await client.get("/v1/tenants/acme/nothing/here")
    lines = access_lines(caplog)
    assert len(lines) == 3, lines
    propose, listing, unmatched = lines
    assert ACCESS_FIELDS <= propose.keys()
    assert propose["request_id"] == "trace-1"
    assert (propose["method"], propose["path"], propose["status"]) == (
        "POST",
        "/v1/agents/{agent_id}/propose",
        201,
    )
    assert (propose["tenant"], propose["role"], propose["agent"]) == (world.tenant, "agent", world.agent)
    assert isinstance(propose["duration_ms"], float) and propose["duration_ms"] >= 0
    assert propose["time"].endswith("Z")
    assert (listing["path"], listing["role"], listing["agent"]) == ("/v1/actions", "auditor", None)
    assert "secret-ish" not in json.dumps(lines)  # never the query string
    assert (unmatched["path"], unmatched["status"]) == (None, 404)  # never the raw path
    assert "tenant" not in unmatched


async def test_the_access_log_can_be_turned_off(backend, caplog):
    from gateway.app import create_app

    app = create_app(backend.settings(access_log=False))
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    async with AsyncTestClient(app=app) as test_client:
        r = await test_client.get("/health")
        assert r.status_code == 200 and r.headers["x-request-id"]  # the id stays
    assert access_lines(caplog) == []


def test_settings_read_the_access_log_switch():
    assert Settings.from_env({}).access_log is True
    assert Settings.from_env({"VERDICT_ACCESS_LOG": "0"}).access_log is False
    assert Settings.from_env({"VERDICT_ACCESS_LOG": "off"}).access_log is False
    assert Settings.from_env({"VERDICT_ACCESS_LOG": "1"}).access_log is True
    assert Settings.from_env(Settings(access_log=False).to_env()).access_log is False
    with pytest.raises(ValueError, match="expected 0 or 1"):
        Settings.from_env({"VERDICT_ACCESS_LOG": "maybe"})


async def test_handlers_and_services_read_the_request_context():
    @get("/who", sync_to_thread=False)
    def who(request: Request) -> dict:
        context = context_of(request)
        return {"id": context.request_id, "client": context.client_address, "ua": context.user_agent}

    app = Litestar([who])
    app.asgi_handler = Tracing(app.asgi_handler, log_requests=False)
    async with AsyncTestClient(app=app) as test_client:
        r = await test_client.get("/who", headers={"X-Request-ID": "ctx-1", "User-Agent": "wallet/2"})
    assert r.json() == {"id": "ctx-1", "client": "testclient", "ua": "wallet/2"}


async def test_no_token_signature_or_stack_trace_reaches_a_client_or_a_log(client, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    world = await make_world(client)
    r = await client.post(f"/v1/agents/{world.agent}/propose", json=pay(), headers=bearer(world.agent_token))
    signature = r.json()["signed_verdict"]["signature"]
    forged = "vk_" + "A" * 43
    keyring = client.app_state.keyring
    secrets_ = [
        world.admin_token,
        world.tenant_admin,
        world.auditor,
        world.agent_token,
        forged,
        signature,
        signature[2:40],
        keyring.admin_token,
    ]
    answers = [
        await client.get("/v1/actions", headers=bearer(forged)),  # unknown token
        await client.get(f"/v1/actions?token={world.agent_token}", headers=bearer(forged)),
        await client.get(f"/v1/actions?cursor={world.tenant_admin}", headers=bearer(world.auditor)),
        await client.get(f"/v1/actions?limit={world.tenant_admin}", headers=bearer(world.auditor)),
        await client.get(f"/v1/{world.agent_token}", headers=bearer(world.auditor)),
        await client.post(
            f"/v1/agents/{world.agent}/propose",
            json={"action": {"type": "x", "sig": signature, "amount": 5}},
            headers=bearer(world.agent_token),
        ),
        await client.post(
            "/v1/tenants",
            content=b'{"id": "' + world.admin_token.encode() + b'", "id": 1}',
            headers={**bearer(world.admin_token), "Content-Type": "application/json"},
        ),
        await client.post(
            f"/v1/tenants/{world.tenant}/api-keys",
            json={"role": world.auditor},
            headers=bearer(world.tenant_admin),
        ),
        await client.get("/v1/actions", headers={"Authorization": f"Basic {world.agent_token}"}),
    ]
    # an unexpected exception inside a handler: a generic problem, the traceback only in the log
    tenants = client.app_state.tenants
    original = tenants.get_tenant

    async def explode(tenant_id):
        raise RuntimeError("boom " + world.tenant_admin[:3])

    tenants.get_tenant = explode
    try:
        crash = await client.get(
            f"/v1/tenants/{world.tenant}?key={world.auditor}",
            headers={**bearer(world.tenant_admin), "X-Request-ID": "crash-1"},
        )
    finally:
        tenants.get_tenant = original
    assert (crash.status_code, crash.json()["code"], crash.json()["detail"]) == (
        500,
        "internal_error",
        "internal error",
    )
    assert crash.json()["request_id"] == "crash-1"
    answers.append(crash)
    for answer in answers:
        assert answer.status_code >= 400
        assert answer.headers["content-type"].startswith("application/problem+json"), answer.text
        assert answer.json()["code"]
        assert "Traceback" not in answer.text and 'File "' not in answer.text
        for secret in secrets_:
            if answer is answers[5] and secret.startswith(signature[:10]):
                continue  # the proposal that carried it in its own body may name its field, never its value
            assert secret not in answer.text, (secret, answer.text)
    crash_log = [r for r in caplog.records if r.name == "verdict.http"]
    assert len(crash_log) == 1 and "crash-1" in crash_log[0].getMessage()
    # every record but the test client's own (httpx logs the URLs it requests)
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    stderr = capsys.readouterr().err
    logged = "\n".join(logging.Formatter().format(r) for r in server_side) + stderr
    tokens = [s for s in secrets_ if s.startswith("vk_")]
    for token in tokens:  # at any level, from any library: tokens never (the database sees hashes)
        assert token not in logged, token
    # A verdict's signature is no secret (the agent gets it, the audit log keeps it), and
    # aiosqlite's DEBUG lines show SQL parameters; at INFO and above, and from our own loggers
    # at any level, no signature appears either.
    operational = [r for r in server_side if r.levelno >= logging.INFO or r.name.startswith("verdict")]
    logged = "\n".join(logging.Formatter().format(r) for r in operational)
    for secret in secrets_:
        assert secret not in logged, secret


def test_verdict_serve_writes_the_access_log_to_stderr(tmp_path):
    import httpx

    gateway = GatewayProcess(
        {"VERDICT_DATA_DIR": str(tmp_path / "verdict"), "VERDICT_CHECKPOINT_INTERVAL": "0"}
    )
    gateway.start()
    try:
        r = httpx.get(f"{gateway.url}/health", headers={"X-Request-ID": "serve-1"}, timeout=5)
        assert (r.status_code, r.headers["x-request-id"]) == (200, "serve-1")
        admin_token = (tmp_path / "verdict" / "admin.token").read_text().strip()
        r = httpx.get(
            f"{gateway.url}/v1/tenants/nope?x={admin_token}", headers=bearer(admin_token), timeout=5
        )
        assert r.status_code == 404
    finally:
        output = gateway.stop()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith('{"time"')]
    by_id = {line["request_id"]: line for line in lines}
    assert by_id["serve-1"]["path"] == "/health" and by_id["serve-1"]["status"] == 200
    assert any(line["path"] == "/v1/tenants/{tenant_id}" and line["role"] == "admin" for line in lines)
    assert admin_token not in output


def test_verdict_serve_without_the_access_log(tmp_path):
    import httpx

    env = {"VERDICT_DATA_DIR": str(tmp_path / "verdict"), "VERDICT_ACCESS_LOG": "0"}
    gateway = GatewayProcess(env).start()
    try:
        assert httpx.get(f"{gateway.url}/health", timeout=5).status_code == 200
    finally:
        output = gateway.stop()
    assert '{"time"' not in output
