"""Policy simulation: replay recorded actions through a draft, writing nothing (both backends),
and `verdict policy simulate`."""

from __future__ import annotations

import json
from typing import Any

import httpx
from click.testing import CliRunner

from gateway.cli import main
from tests.integration.helpers import EXAMPLE_POLICY, bearer, make_world, pay, verified_log

# The example policy with the CFO threshold lowered from 5,000 to 1,000.
DRAFT = EXAMPLE_POLICY.replace('gt: "5000"', 'gt: "1000"')


async def simulate(client: Any, world: Any, document: str, token: str | None = None, **params: Any):
    return await client.post(
        f"/v1/tenants/{world.tenant}/policies/simulate",
        params=params,
        content=document.encode(),
        headers={**bearer(token or world.tenant_admin), "Content-Type": "application/yaml"},
    )


async def test_a_draft_reports_every_decision_that_would_change_and_writes_nothing(client):
    world = await make_world(client)
    assert 'gt: "5000"' in EXAMPLE_POLICY
    proposed = []
    for amount in ("500.00", "1200.00", "2500.00", "7800.00", "60000"):
        r = await client.post(
            f"/v1/agents/{world.agent}/propose", json=pay(amount), headers=bearer(world.agent_token)
        )
        proposed.append(r.json())
    before = len(await verified_log(client, world))
    r = await simulate(client, world, DRAFT)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["replayed"] == 5
    changed = {c["id"]: c for c in result["changes"]}
    assert set(changed) == {proposed[1]["action_id"], proposed[2]["action_id"]}  # 1,200 and 2,500
    change = changed[proposed[1]["action_id"]]
    assert (change["before_decision"], change["after_decision"]) == ("ALLOW", "ESCALATE")
    assert change["after_approvals"][0]["roles"] == ["cfo"] and change["after"]["checks"]
    # the same document changes nothing; `last` bounds the replay (newest first)
    same = (await simulate(client, world, EXAMPLE_POLICY, token=world.auditor)).json()
    assert same == {"replayed": 5, "changes": []}
    assert (await simulate(client, world, DRAFT, last=2)).json()["replayed"] == 2
    assert (await simulate(client, world, DRAFT, last=2)).json()["changes"] == []
    later = (await simulate(client, world, DRAFT, **{"from": "2999-01-01T00:00:00Z"})).json()
    assert later == {"replayed": 0, "changes": []}
    assert len(await verified_log(client, world)) == before
    versions = (await client.get("/v1/tenants/acme/policies", headers=bearer(world.auditor))).json()
    assert len(versions) == 1


async def test_simulation_refusals(client):
    world = await make_world(client)
    r = await simulate(client, world, "schema: verdict.policy/v1\nrules: []\n")
    assert r.status_code == 422 and r.json()["code"] == "policy_invalid"
    r = await simulate(client, world, DRAFT, last=0)
    assert r.status_code == 400
    r = await simulate(client, world, DRAFT, token=world.agent_token)
    assert r.status_code == 403
    r = await simulate(client, world, DRAFT, **{"from": "yesterday"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_time"
    other = await make_world(client, "globex")
    r = await simulate(client, world, DRAFT, token=other.tenant_admin)
    assert r.status_code == 404


def test_the_cli_posts_the_draft_and_prints_the_changes(tmp_path, monkeypatch):
    draft = tmp_path / "draft.yaml"
    draft.write_text(DRAFT)
    seen: dict[str, Any] = {}
    answer = {
        "replayed": 3,
        "changes": [{"id": "act_1", "before_decision": "ALLOW", "before_reason": "no_rule_matched",
                     "after_decision": "ESCALATE", "after_reason": "amount_above_threshold",
                     "after_approvals": [], "after": {}}],
    }  # fmt: skip

    def post(url, **kwargs):
        seen.update(url=url, **kwargs)
        return httpx.Response(200, json=answer)

    monkeypatch.setattr(httpx, "post", post)
    args = ["policy", "simulate", "--url", "http://gw/", "--token", "t0k", "--tenant", "acme", str(draft)]
    result = CliRunner().invoke(main, [*args, "--last", "7"])
    assert result.exit_code == 0, result.output
    assert seen["url"] == "http://gw/v1/tenants/acme/policies/simulate" and seen["params"] == {"last": 7}
    assert seen["headers"]["Content-Type"] == "application/yaml" and seen["content"] == DRAFT.encode()
    assert "act_1: ALLOW (no_rule_matched) -> ESCALATE (amount_above_threshold)" in result.output
    assert "1 of 3 decisions would change" in result.output
    result = CliRunner().invoke(main, [*args, "--json"])
    assert json.loads(result.output) == answer

    def refuse(url, **kwargs):
        problem = {"code": "policy_invalid", "detail": "the policy has 1 problem(s)",
                   "problems": [{"path": "rules", "message": "at least one rule"}]}  # fmt: skip
        return httpx.Response(422, json=problem, headers={"content-type": "application/problem+json"})

    monkeypatch.setattr(httpx, "post", refuse)
    result = CliRunner().invoke(main, args)
    assert (
        result.exit_code == 1 and "policy_invalid" in result.output and "at least one rule" in result.output
    )
