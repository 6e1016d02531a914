"""`verdict admin`: every command against a real `verdict serve` (both backends), the way an
operator types it: --url, --token-file or VERDICT_TOKEN, --tenant or VERDICT_TENANT, --json."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from gateway.cli import main
from tests.integration.helpers import EXAMPLE_POLICY, bearer, pay
from tests.integration.process import GatewayProcess

CFO = "0x" + "c1" * 20
CONTROLLER = "0x" + "c2" * 20


@pytest.fixture
def gateway(backend):
    process = GatewayProcess({**backend.env(), "VERDICT_ACCESS_LOG": "0"}).start(timeout=90)
    try:
        yield process
    finally:
        process.stop()


class Admin:
    """Runs `verdict admin …` against the gateway; returns stdout, asserting the exit status."""

    def __init__(self, url: str, token_file: Path) -> None:
        self.url, self.token_file = url, token_file
        self.runner = CliRunner()

    def __call__(self, *args: str, token_file: Path | None = None, exit_code: int = 0, env=None) -> str:
        argv = ["admin", *args, "--url", self.url]
        if token_file is not False:
            argv += ["--token-file", str(token_file or self.token_file)]
        result = self.runner.invoke(main, argv, env=env, catch_exceptions=False)
        assert result.exit_code == exit_code, (argv, result.output)
        return result.output

    def json(self, *args: str, **kwargs) -> object:
        return json.loads(self(*args, "--json", **kwargs))


def test_every_admin_command_against_a_running_gateway(gateway, backend, tmp_path):
    admin = Admin(gateway.url, backend.data_dir / "admin.token")

    # tenants: create, show, update (the admin token)
    out = admin("tenants", "create", "acme", "--name", "Acme Corp", "--timezone", "UTC")
    assert "Acme Corp" in out and "acme" in out
    assert admin.json("tenants", "show", "acme")["name"] == "Acme Corp"
    assert admin.json("tenants", "update", "acme", "--timezone", "Europe/Paris")["timezone"] == "Europe/Paris"
    assert "timezone:" in admin("tenants", "update", "acme", "--timezone", "")

    # api-keys: create (written to a 0600 file), list, revoke
    tenant_admin = tmp_path / "tenant-admin.token"
    out = admin(
        "api-keys", "create", "--tenant", "acme", "--role", "tenant_admin", "--token-out", str(tenant_admin)
    )
    assert "vk_" not in out and stat.S_IMODE(tenant_admin.stat().st_mode) == 0o600
    as_tenant_admin = Admin(gateway.url, tenant_admin)
    auditor = as_tenant_admin.json("api-keys", "create", "--tenant", "acme", "--role", "auditor")
    assert auditor["token"].startswith("vk_") and auditor["role"] == "auditor"
    listing = as_tenant_admin("api-keys", "list", "--tenant", "acme")
    assert auditor["id"] in listing and "ROLE" in listing.splitlines()[0]
    assert f"revoked {auditor['id']}" in as_tenant_admin(
        "api-keys", "revoke", "--tenant", "acme", auditor["id"]
    )
    keys = as_tenant_admin.json("api-keys", "list", "--tenant", "acme")
    assert next(k for k in keys if k["id"] == auditor["id"])["revoked_at"] is not None
    r = httpx.get(f"{gateway.url}/v1/tenants/acme", headers=bearer(auditor["token"]), timeout=30)
    assert r.status_code == 401  # revoked means refused

    # the rest as the tenant admin, the tenant from the environment
    run = as_tenant_admin
    tenant_env = {"VERDICT_TENANT": "acme"}

    # agents: create, list, rotate-token, scope, rate-limit
    agent_token_file = tmp_path / "agent.token"
    run(
        "agents",
        "create",
        "--id",
        "bot",
        "--name",
        "AP bot",
        "--token-out",
        str(agent_token_file),
        env=tenant_env,
    )
    assert "AP bot" in run("agents", "list", env=tenant_env)
    old_token = agent_token_file.read_text().strip()
    rotated = run.json("agents", "rotate-token", "bot", env=tenant_env)
    assert rotated["agent_id"] == "bot" and rotated["revoked_key_ids"]
    agent_token = rotated["token"]
    r = httpx.get(
        f"{gateway.url}/v1/actions", params={"tenant_id": "acme"}, headers=bearer(old_token), timeout=30
    )
    assert r.status_code == 401
    out = run(
        "agents", "scope", "bot", "--action-type", "pay_invoice", "--max-amount", "100000", env=tenant_env
    )
    assert "pay_invoice" in out and "100000" in out
    assert run.json("agents", "scope", "bot", env=tenant_env)["scope"]["action_types"] == ["pay_invoice"]
    assert "no scope" in run("agents", "scope", "bot", "--clear", env=tenant_env)
    assert "5 proposals per minute" in run("agents", "rate-limit", "bot", "5", env=tenant_env)
    assert run.json("agents", "rate-limit", "bot", env=tenant_env)["propose_per_minute"] == 5
    assert "(the tenant's limit)" in run("agents", "rate-limit", "bot", "default", env=tenant_env)
    run("agents", "rate-limit", "bot", "1000", env=tenant_env)

    # approvers: add, list, change, remove
    assert (
        CFO.lower() in run("approvers", "add", CFO, "--role", "cfo", "--name", "CFO", env=tenant_env).lower()
    )
    run("approvers", "add", CONTROLLER, "--role", "controller", env=tenant_env)
    assert len(run("approvers", "list", env=tenant_env).splitlines()) == 1 + 2  # a header and a row each
    changed = run.json(
        "approvers", "change", CONTROLLER, "--role", "cfo", "--role", "controller", env=tenant_env
    )
    assert sorted(changed["roles"]) == ["cfo", "controller"]
    assert "removed" in run("approvers", "remove", CONTROLLER, env=tenant_env)
    assert len(run.json("approvers", "list", env=tenant_env)) == 1
    assert len(run.json("approvers", "list", "--removed", env=tenant_env)) == 2

    # policies: publish, list, activate, diff
    first = tmp_path / "policy.yaml"
    first.write_text(EXAMPLE_POLICY)
    assert "published version 1" in run("policies", "publish", str(first), env=tenant_env)
    second = tmp_path / "policy-v2.yaml"
    second.write_text(EXAMPLE_POLICY.replace('gt: "5000"', 'gt: "6000"'))
    assert EXAMPLE_POLICY != second.read_text()
    out = run("policies", "publish", str(second), "--no-activate", env=tenant_env)
    assert "published version 2" in out and "activated" not in out
    versions = run.json("policies", "list", env=tenant_env)
    assert [(v["version"], v["active"]) for v in versions] == [(1, True), (2, False)]
    diff = run("policies", "diff", "1", "2", env=tenant_env)
    assert "--- version 1" in diff and "+++ version 2" in diff
    assert any(line.startswith("-") and "5000" in line for line in diff.splitlines())
    assert any(line.startswith("+") and "6000" in line for line in diff.splitlines())
    assert "identical" in run("policies", "diff", "1", "1", env=tenant_env)
    assert "version 2 is active" in run("policies", "activate", "2", env=tenant_env)
    run("policies", "activate", "1", env=tenant_env)

    # actions: list with filters, show with the explain trace, cancel
    agent = bearer(agent_token)
    escalated = httpx.post(
        f"{gateway.url}/v1/agents/bot/propose", json=pay("7800.00"), headers=agent, timeout=30
    )
    allowed = httpx.post(f"{gateway.url}/v1/agents/bot/propose", json=pay("10.00"), headers=agent, timeout=30)
    assert (escalated.json()["decision"], allowed.json()["decision"]) == ("ESCALATE", "ALLOW")
    pending_id, allowed_id = escalated.json()["action_id"], allowed.json()["action_id"]
    listing = run("actions", "list", "--status", "pending_approval", env=tenant_env)
    assert pending_id in listing and allowed_id not in listing
    page = run.json("actions", "list", "--decision", "ALLOW", "--agent", "bot", env=tenant_env)
    assert [a["action_id"] for a in page["actions"]] == [allowed_id]
    page = run.json("actions", "list", "--limit", "1", env=tenant_env)
    assert len(page["actions"]) == 1 and page["next_cursor"]
    rest = run.json("actions", "list", "--limit", "1", "--cursor", page["next_cursor"], env=tenant_env)
    assert {page["actions"][0]["action_id"], rest["actions"][0]["action_id"]} == {pending_id, allowed_id}
    shown = run("actions", "show", pending_id)
    assert "ESCALATE" in shown and "explain trace:" in shown and "matched" in shown
    assert "explain trace" not in run("actions", "show", pending_id, "--no-explain")
    assert f"{pending_id} is cancelled" in run("actions", "cancel", pending_id)
    assert run.json("actions", "show", pending_id)["status"] == "cancelled"


def test_admin_errors_are_one_line_and_tokens_come_from_the_environment(gateway, backend, tmp_path):
    admin = Admin(gateway.url, backend.data_dir / "admin.token")
    out = admin("tenants", "show", "nope", exit_code=1)
    assert out.strip().count("\n") == 0 and "answered 404 tenant_not_found" in out
    token = (backend.data_dir / "admin.token").read_text().strip()
    out = admin(
        "tenants", "create", "globex", "--name", "Globex", token_file=False, env={"VERDICT_TOKEN": token}
    )
    assert "Globex" in out
    out = admin("tenants", "show", "globex", token_file=False, env={"VERDICT_TOKEN": ""}, exit_code=2)
    assert "no token" in out
    out = admin("tenants", "show", "globex", token_file=False, env={"VERDICT_TOKEN": "vk_wrong"}, exit_code=1)
    assert "401 invalid_token" in out
    loose = tmp_path / "loose.token"
    loose.write_text(token)
    loose.chmod(0o644)
    assert "chmod 600" in admin("tenants", "show", "globex", token_file=loose, exit_code=1)
    dead = Admin("http://127.0.0.1:9", backend.data_dir / "admin.token")  # nothing listens on port 9
    out = dead("tenants", "show", "globex", exit_code=1)
    assert "cannot reach the gateway" in out and "Traceback" not in out


def test_metrics_token_command_writes_a_token_the_gateway_accepts(backend, tmp_path):
    runner = CliRunner()
    token_file = tmp_path / "metrics.token"
    result = runner.invoke(main, ["admin", "metrics-token", str(token_file)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and "vk_" not in result.output
    again = runner.invoke(main, ["admin", "metrics-token", str(token_file)])
    assert again.exit_code == 1 and "not overwriting" in again.output
    env = {**backend.env(), "VERDICT_ACCESS_LOG": "0", "VERDICT_METRICS_TOKEN_FILE": str(token_file)}
    process = GatewayProcess(env).start(timeout=90)
    try:
        r = httpx.get(f"{process.url}/metrics", headers=bearer(token_file.read_text().strip()), timeout=30)
        assert r.status_code == 200 and "verdict_database_up 1.0" in r.text
    finally:
        process.stop()
