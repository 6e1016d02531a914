"""`GET /metrics`: the names and counts, who may read it, and counts summed over worker processes.

The exposition text is read with prometheus_client's own parser (the format's reference
implementation), never with string matching of our own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.clock import new_token
from tests.integration.helpers import bearer, make_world, pay
from tests.integration.process import GatewayProcess


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, for every sample of the text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(client, token: str) -> dict:
    r = await client.get("/metrics", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


async def test_metrics_count_decisions_entries_batches_and_read_the_database(client):
    world = await make_world(client)
    agent = bearer(world.agent_token)
    before = await scrape(client, world.admin_token)
    assert value(before, "verdict_database_up") == 1
    for amount, code in (("1200.00", 201), ("1300.00", 201), ("7800.00", 201)):
        r = await client.post(f"/v1/agents/{world.agent}/propose", json=pay(amount), headers=agent)
        assert r.status_code == code, r.text
    r = await client.post(f"/v1/agents/{world.agent}/propose", json=pay(vendor="evil-corp"), headers=agent)
    assert r.json()["decision"] == "DENY"
    keyed = {**agent, "Idempotency-Key": "metrics-1"}
    for _ in range(2):  # the second is a replay: counted as such, not as a decision
        r = await client.post(f"/v1/agents/{world.agent}/propose", json=pay("10.00"), headers=keyed)
        assert r.status_code == 201, r.text
    r = await client.post(f"/v1/agents/{world.agent}/propose", json={"action": "x"}, headers=agent)
    assert r.status_code >= 400
    bad_code = r.json()["code"]

    after = await scrape(client, world.admin_token)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("verdict_decisions_total", decision="ALLOW") == 3
    assert delta("verdict_decisions_total", decision="ESCALATE") == 1
    assert delta("verdict_decisions_total", decision="DENY") == 1
    assert delta("verdict_idempotent_replays_total") == 1
    assert delta("verdict_problems_total", status=str(r.status_code), code=bad_code) == 1
    # the propose latency: every answer of the propose route
    route = "/v1/agents/{agent_id}/propose"
    assert delta("verdict_http_request_duration_seconds_count", method="POST", route=route) == 7
    # the replay is evaluated too: only the chain writer finds the key's record, under its lock
    assert delta("verdict_policy_evaluation_seconds_count") == 6
    assert delta("verdict_http_requests_total", method="POST", route=route, status="201") == 6
    # 5 proposals: each an action.proposed entry, and the 3 ALLOWs a verdict.issued entry too
    assert delta("verdict_audit_entries_appended_total") == 5 + 3
    assert delta("verdict_chain_writer_batch_size_count") >= 1
    assert delta("verdict_chain_writer_batch_size_sum") == 6  # every unit (the replay's too) in a batch
    # read from the database at scrape time: the log as the audit API sees it
    r = await client.get(f"/v1/tenants/{world.tenant}/audit/checkpoint", headers=bearer(world.auditor))
    assert r.status_code == 200
    log_size = int(r.text.splitlines()[1])
    assert value(after, "verdict_audit_log_entries") >= log_size
    assert value(after, "verdict_approvals_pending") == 1
    assert value(after, "verdict_tenants") == 1
    # no tenant label unless the operator asks (cardinality)
    assert not any(dict(labels).get("tenant") for _, labels in after)


async def test_rate_limited_requests_are_counted(client):
    world = await make_world(client, propose_per_minute=1)
    agent = bearer(world.agent_token)
    before = await scrape(client, world.admin_token)
    statuses = []
    for _ in range(2):
        r = await client.post(f"/v1/agents/{world.agent}/propose", json=pay(), headers=agent)
        statuses.append(r.status_code)
    assert statuses == [201, 429]
    after = await scrape(client, world.admin_token)
    assert (
        value(after, "verdict_rate_limited_requests_total")
        - value(before, "verdict_rate_limited_requests_total")
        == 1
    )


async def test_only_the_admin_and_the_metrics_token_read_metrics(backend, tmp_path):
    from litestar.testing import AsyncTestClient

    from gateway.app import create_app

    token_file = tmp_path / "metrics.token"
    token_file.write_text(new_token() + "\n")
    token_file.chmod(0o600)
    app = create_app(backend.settings(metrics_token_file=token_file, metrics_tenant_labels=True))
    async with AsyncTestClient(app=app) as client:
        client.app_state = app.state
        world = await make_world(client)
        r = await client.post(
            f"/v1/agents/{world.agent}/propose", json=pay(), headers=bearer(world.agent_token)
        )
        assert r.status_code == 201
        metrics_token = token_file.read_text().strip()
        scraped = await scrape(client, metrics_token)
        # opted in: per-tenant series
        assert value(scraped, "verdict_tenant_decisions_total", tenant=world.tenant, decision="ALLOW") >= 1
        assert value(scraped, "verdict_audit_log_entries", tenant=world.tenant) >= 2
        r = await client.get("/metrics")
        assert (r.status_code, r.json()["code"]) == (401, "missing_credentials")
        for token in (world.tenant_admin, world.auditor, world.agent_token):
            r = await client.get("/metrics", headers=bearer(token))
            assert (r.status_code, r.json()["code"]) == (403, "forbidden_role")
        r = await client.get("/metrics", headers=bearer(metrics_token + "x"))
        assert (r.status_code, r.json()["code"]) == (401, "invalid_token")
        # the metrics token reads metrics and nothing else
        r = await client.get(f"/v1/tenants/{world.tenant}", headers=bearer(metrics_token))
        assert r.status_code == 404
        r = await client.post("/v1/tenants", json={"id": "x", "name": "x"}, headers=bearer(metrics_token))
        assert (r.status_code, r.json()["code"]) == (403, "forbidden_role")


def test_a_metrics_token_file_others_can_read_stops_the_start(tmp_path):
    from crypto.errors import KeyFileError
    from gateway.auth import metrics_token_hash

    loose = tmp_path / "metrics.token"
    loose.write_text(new_token())
    loose.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        metrics_token_hash(loose)
    short = tmp_path / "short.token"
    short.write_text("guessable")
    short.chmod(0o600)
    with pytest.raises(KeyFileError, match="at least"):
        metrics_token_hash(short)


COUNT_IN_A_PROCESS = textwrap.dedent(
    """
    import sys
    from gateway import metrics
    for _ in range(int(sys.argv[1])):
        metrics.count_decision("t", "ALLOW", per_tenant=False)
    metrics.AUDIT_ENTRIES.inc(int(sys.argv[1]))
    """
)
RENDER_IN_A_PROCESS = textwrap.dedent(
    """
    import sys
    from gateway import metrics
    sys.stdout.write(metrics.render(metrics.DatabaseGauges(up=False), per_tenant=False).decode())
    """
)


def test_counts_of_separate_processes_are_summed_by_any_process(tmp_path):
    """prometheus_client's multiprocess mode as `verdict serve` sets it up: three processes
    (two that count, one that answers the scrape) share only the directory."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for count in (3, 4):
        subprocess.run(
            [sys.executable, "-c", COUNT_IN_A_PROCESS, str(count)], env=env, check=True, timeout=60
        )
    rendered = subprocess.run(
        [sys.executable, "-c", RENDER_IN_A_PROCESS],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    scraped = samples(rendered)
    assert value(scraped, "verdict_decisions_total", decision="ALLOW") == 7
    assert value(scraped, "verdict_audit_entries_appended_total") == 7
    assert value(scraped, "verdict_database_up") == 0


def test_verdict_serve_with_two_workers_answers_the_same_counts_from_every_worker(backend):
    """`verdict serve --workers 2`: whichever worker answers a scrape, it counts every worker's
    proposals (each request on a new connection, so both workers take some)."""
    gateway = GatewayProcess({**backend.env(), "VERDICT_ACCESS_LOG": "0"}, "--workers", "2").start(timeout=90)
    try:
        admin = (backend.data_dir / "admin.token").read_text().strip()
        tenant_admin = _setup_tenant(gateway.url, admin)
        agent = _agent_with_policy(gateway.url, tenant_admin)
        proposals = 12
        for _ in range(proposals):
            r = httpx.post(
                f"{gateway.url}/v1/agents/bot/propose", json=pay(), headers=bearer(agent), timeout=60
            )
            assert r.status_code == 201, r.text
        for _ in range(4):
            r = httpx.get(f"{gateway.url}/metrics", headers=bearer(admin), timeout=60)
            assert r.status_code == 200, r.text
            scraped = samples(r.text)
            assert value(scraped, "verdict_decisions_total", decision="ALLOW") == proposals
            assert value(scraped, "verdict_audit_entries_appended_total") >= 2 * proposals
    finally:
        output = gateway.stop()
    assert "Traceback" not in output, output


def _setup_tenant(url: str, admin: str) -> str:
    r = httpx.post(
        f"{url}/v1/tenants", json={"id": "acme", "name": "Acme"}, headers=bearer(admin), timeout=60
    )
    assert r.status_code == 201, r.text
    r = httpx.post(
        f"{url}/v1/tenants/acme/api-keys", json={"role": "tenant_admin"}, headers=bearer(admin), timeout=60
    )
    assert r.status_code == 201, r.text
    return r.json()["token"]


def _agent_with_policy(url: str, tenant_admin: str) -> str:
    from tests.integration.helpers import EXAMPLE_POLICY

    headers = bearer(tenant_admin)
    r = httpx.post(f"{url}/v1/tenants/acme/agents", json={"id": "bot"}, headers=headers, timeout=60)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    r = httpx.post(
        f"{url}/v1/tenants/acme/policies", content=EXAMPLE_POLICY.encode(),
        headers={**headers, "Content-Type": "application/yaml"}, timeout=60,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    r = httpx.put(
        f"{url}/v1/tenants/acme/rate-limits", json={"propose_per_minute": 100000}, headers=headers, timeout=60
    )
    assert r.status_code == 200, json.dumps(r.json())
    return token


async def test_unintegrated_entries_and_checkpoint_age_follow_the_checkpoints(backend):
    from litestar.testing import AsyncTestClient

    from gateway.app import create_app

    app = create_app(backend.settings(checkpoint_interval=0))  # checkpoints only on request
    async with AsyncTestClient(app=app) as client:
        client.app_state = app.state
        world = await make_world(client)
        checkpoint = f"/v1/tenants/{world.tenant}/audit/checkpoint"
        assert (await client.post(checkpoint, headers=bearer(world.auditor))).status_code in (200, 201)
        covered = await scrape(client, world.admin_token)
        assert value(covered, "verdict_audit_unintegrated_entries") == 0
        assert value(covered, "verdict_audit_checkpoint_age_seconds") == 0
        r = await client.post(
            f"/v1/agents/{world.agent}/propose", json=pay(), headers=bearer(world.agent_token)
        )
        assert r.json()["decision"] == "ALLOW"
        behind = await scrape(client, world.admin_token)
        assert value(behind, "verdict_audit_unintegrated_entries") == 2  # action.proposed, verdict.issued
        assert ("verdict_audit_checkpoint_age_seconds", ()) in behind
        assert value(behind, "verdict_audit_log_entries") == value(covered, "verdict_audit_log_entries") + 2
        assert (await client.post(checkpoint, headers=bearer(world.auditor))).status_code in (200, 201)
        again = await scrape(client, world.admin_token)
        assert value(again, "verdict_audit_unintegrated_entries") == 0
        assert value(again, "verdict_audit_checkpoint_age_seconds") == 0


async def test_labels_never_carry_the_clients_path_or_method(client):
    world = await make_world(client, policy="")
    r = await client.request("BREW", "/v1/secret-looking/path/vk_abc")
    assert r.status_code >= 400
    scraped = await scrape(client, world.admin_token)
    labels = [dict(key) for _, key in scraped]
    assert not any("vk_abc" in v or "BREW" in v for lab in labels for v in lab.values())
    assert any(lab.get("method") == "other" and lab.get("route") == "unmatched" for lab in labels)


async def test_metrics_are_served_during_a_database_outage_with_the_metrics_token(backend, tmp_path):
    """The metrics token needs no database (the admin token's lookup does): an outage is when
    the metrics matter most. PostgreSQL only: it is the networked backend."""
    import asyncio

    from litestar.testing import AsyncTestClient

    from gateway.app import create_app
    from tests.integration.test_database_outage import proxied

    if backend.name != "postgresql":
        pytest.skip("an embedded SQLite file has no connection to lose")
    proxy, via_proxy = proxied(backend.url)
    token_file = tmp_path / "metrics.token"
    token_file.write_text(new_token())
    token_file.chmod(0o600)
    app = create_app(backend.settings(database_url=via_proxy, metrics_token_file=token_file))
    try:
        async with AsyncTestClient(app=app) as client:
            client.app_state = app.state
            token = token_file.read_text().strip()
            before = await scrape(client, token)
            assert value(before, "verdict_database_up") == 1
            assert value(before, "verdict_database_pool_connections", state="max") >= 1
            assert value(before, "verdict_database_pool_connections", state="open") >= 1
            proxy.cut()
            r = await asyncio.wait_for(client.get("/metrics", headers=bearer(token)), timeout=30)
            assert r.status_code == 200, r.text
            during = samples(r.text)
            assert value(during, "verdict_database_up") == 0
            errors = "verdict_database_errors_total"
            assert value(during, errors, code="database_unavailable") > value(
                before, errors, code="database_unavailable"
            )
            proxy.restore()
    finally:
        proxy.close()


async def test_witness_metrics_count_real_cosigning_by_witness_and_outcome(backend, tmp_path):
    """Three `verdict witness serve` processes, quorum 2: every cosignature asked is counted by
    witness and outcome, every round as published or held, and the scrape reads how far the
    witnessed checkpoints lag behind the log."""
    from litestar.testing import AsyncTestClient

    from gateway.app import create_app
    from tests.integration.witnesses import WitnessProcess, policy_text

    trio = [WitnessProcess(tmp_path / name, f"witness.test/{name}") for name in ("alice", "bob", "carol")]
    policy = tmp_path / "policy"
    policy.write_text(policy_text(trio, 2))
    settings = backend.settings(witness_policy=policy, checkpoint_interval=0)
    try:
        for witness in trio:
            witness.start()
        app = create_app(settings)
        async with AsyncTestClient(app=app) as client:
            client.app_state = app.state
            world = await make_world(client)
            for witness in trio:
                witness.watch(app.state.audit.vkey(world.tenant))

            async def prove() -> int:
                r = await client.post(
                    f"/v1/agents/{world.agent}/propose", json=pay("3.00"), headers=bearer(world.agent_token)
                )
                proof = await client.get(
                    f"/v1/actions/{r.json()['action_id']}/proof", headers=bearer(world.auditor)
                )
                return proof.status_code

            before = await scrape(client, world.admin_token)
            assert value(before, "verdict_audit_unwitnessed_entries") > 0  # nothing witnessed yet
            assert value(before, "verdict_audit_witnessed_checkpoint_age_seconds") == 0  # nor signed
            assert await prove() == 200  # one signed checkpoint, one round: all three cosign
            after = await scrape(client, world.admin_token)
            for name in ("alice", "bob", "carol"):
                ok = ("verdict_witness_requests_total", name, "ok")
                assert delta(before, after, *ok) == 1
                duration = ("verdict_witness_request_duration_seconds_count", name)
                assert delta(before, after, *duration) == 1
            assert delta(before, after, "verdict_witnessed_checkpoints_total", "published") == 1
            assert delta(before, after, "verdict_witnessed_checkpoints_total", "held") == 0
            assert value(after, "verdict_audit_unwitnessed_entries") == 0
            assert value(after, "verdict_audit_witnessed_checkpoint_age_seconds") == 0

            # bob down, carol no longer watching the log (404): alice alone is no quorum
            trio[1].stop()
            trio[2].logs_file.write_text("# watching nothing\n")
            assert await prove() == 503
            held = await scrape(client, world.admin_token)
            assert delta(after, held, "verdict_witnessed_checkpoints_total", "held") >= 1
            assert delta(after, held, "verdict_witnessed_checkpoints_total", "published") == 0
            assert delta(after, held, "verdict_witness_requests_total", "alice", "ok") >= 1
            assert delta(after, held, "verdict_witness_requests_total", "bob", "unreachable") >= 1
            assert delta(after, held, "verdict_witness_requests_total", "carol", "refused") >= 1
            assert value(held, "verdict_audit_unwitnessed_entries") == 2  # action.proposed, verdict.issued
            assert ("verdict_audit_witnessed_checkpoint_age_seconds", ()) in held
            witness_series = [labels for name, labels in held if "witness" in name]
            assert witness_series and not any(dict(labels).get("tenant") for labels in witness_series)

            # per-tenant gauges when the operator opts in (VERDICT_METRICS_TENANT_LABELS=1)
            app.state.settings = dataclasses.replace(settings, metrics_tenant_labels=True)
            tenanted = await scrape(client, world.admin_token)
            assert value(tenanted, "verdict_audit_unwitnessed_entries", tenant=world.tenant) == 2
    finally:
        for witness in trio:
            witness.stop()


def delta(before: dict, after: dict, name: str, witness_or_result: str, outcome: str | None = None) -> float:
    """How much a witness counter grew between two scrapes."""
    if name == "verdict_witnessed_checkpoints_total":
        labels = {"result": witness_or_result}
    elif outcome is None:
        labels = {"witness": witness_or_result}
    else:
        labels = {"witness": witness_or_result, "outcome": outcome}
    return value(after, name, **labels) - value(before, name, **labels)
