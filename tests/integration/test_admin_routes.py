"""Tenants, credentials, agents, approvers and policies through the HTTP API, on both backends."""

from __future__ import annotations

import hashlib
import json

import rfc8785

from tests.integration.helpers import EXAMPLE_POLICY, bearer, make_world, verified_log


def problem(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code and body["status"] == status and body["type"].endswith(code)
    return body


async def test_create_tenant(client):
    admin = client.app_state.keyring.admin_token
    r = await client.post("/v1/tenants", json={"id": "acme", "name": "Acme Corp"}, headers=bearer(admin))
    assert r.status_code == 201
    assert r.json()["chain_id"] == 1
    assert r.json()["verifying_contract"] == "0x" + "0" * 40
    problem(
        await client.post("/v1/tenants", json={"id": "acme", "name": "Again"}, headers=bearer(admin)),
        409,
        "tenant_exists",
    )
    problem(
        await client.post("/v1/tenants", json={"id": "Bad Id", "name": "x"}, headers=bearer(admin)),
        422,
        "invalid_tenant_id",
    )
    problem(
        await client.post(
            "/v1/tenants", json={"id": "b", "name": "x", "verifying_contract": "0x12"}, headers=bearer(admin)
        ),
        422,
        "invalid_address",
    )
    bad_checksum = "0xABaBaBaBABabABabAbAbABAbABabababaBaBABab"
    problem(
        await client.post(
            "/v1/tenants",
            json={"id": "b", "name": "x", "verifying_contract": bad_checksum},
            headers=bearer(admin),
        ),
        422,
        "invalid_address",
    )
    for chain_id in (0, 2**53):  # beyond 2**53 - 1 the logged typed data would not be exact JSON
        problem(
            await client.post(
                "/v1/tenants", json={"id": "b", "name": "x", "chain_id": chain_id}, headers=bearer(admin)
            ),
            422,
            "invalid_chain_id",
        )
    problem(await client.post("/v1/tenants", json={"id": "b"}, headers=bearer(admin)), 400, "invalid_request")
    problem(await client.post("/v1/tenants", json={"id": "b", "name": "x"}), 401, "missing_credentials")
    problem(
        await client.post("/v1/tenants", json={"id": "b", "name": "x"}, headers=bearer("vk_wrong")),
        401,
        "invalid_token",
    )
    r = await client.get("/v1/tenants/acme", headers=bearer(admin))
    assert r.json()["name"] == "Acme Corp"


async def test_tenant_log_starts_with_its_creation(client):
    world = await make_world(client, propose_per_minute=None)
    entries = await verified_log(client, world)
    assert [e.type for e in entries] == [
        "tenant.created",
        "api_key.created",
        "api_key.created",
        "agent.created",
        "policy.published",
    ]
    assert entries[0].seq == 0 and entries[0].prev == "0" * 64
    assert entries[0].data["id"] == "acme"
    # no secret ever reaches the log
    for entry in entries:
        assert world.agent_token not in entry.raw.decode() and world.tenant_admin not in entry.raw.decode()


async def test_credentials_roles(client):
    world = await make_world(client)
    problem(
        await client.post("/v1/tenants", json={"id": "x", "name": "x"}, headers=bearer(world.tenant_admin)),
        403,
        "forbidden_role",
    )
    problem(
        await client.post(
            "/v1/tenants/acme/api-keys", json={"role": "admin"}, headers=bearer(world.tenant_admin)
        ),
        400,
        "invalid_request",
    )
    problem(
        await client.post(
            "/v1/tenants/acme/api-keys", json={"role": "auditor"}, headers=bearer(world.auditor)
        ),
        403,
        "forbidden_role",
    )
    problem(
        await client.post("/v1/tenants/acme/agents", json={}, headers=bearer(world.agent_token)),
        403,
        "forbidden_role",
    )
    problem(
        await client.post("/v1/tenants/acme/agents", json={}, headers=bearer(world.admin_token)),
        403,
        "forbidden_role",
    )
    r = await client.post("/v1/tenants/acme/agents", json={}, headers=bearer(world.tenant_admin))
    assert r.status_code == 201 and r.json()["id"].startswith("agt_") and r.json()["token"].startswith("vk_")
    problem(
        await client.post(
            "/v1/tenants/acme/agents", json={"id": "ap-bot"}, headers=bearer(world.tenant_admin)
        ),
        409,
        "agent_exists",
    )
    problem(
        await client.post(
            "/v1/tenants/acme/agents", json={"id": "bad id"}, headers=bearer(world.tenant_admin)
        ),
        422,
        "invalid_agent_id",
    )
    agents = (await client.get("/v1/tenants/acme/agents", headers=bearer(world.auditor))).json()
    assert {a["id"] for a in agents} >= {"ap-bot"}
    assert all("token" not in a for a in agents)


async def test_other_tenant_is_404_not_403(client):
    await make_world(client, "acme")
    globex = await make_world(client, "globex")
    for method, path, body in [
        ("post", "/v1/tenants/acme/api-keys", {"role": "auditor"}),
        ("post", "/v1/tenants/acme/agents", {}),
        ("post", "/v1/tenants/acme/approvers", {"address": "0x" + "11" * 20, "roles": ["cfo"]}),
        ("get", "/v1/tenants/acme/policies", None),
        ("get", "/v1/tenants/acme/policies/1", None),
        ("post", "/v1/tenants/acme/policies/1/activate", None),
        ("get", "/v1/tenants/acme/audit/entries", None),
        ("get", "/v1/tenants/acme", None),
        ("get", "/v1/tenants/nonexistent", None),
    ]:
        kwargs = {"headers": bearer(globex.tenant_admin)}
        if body is not None:
            kwargs["json"] = body
        problem(await getattr(client, method)(path, **kwargs), 404, "tenant_not_found")


async def test_approvers(client):
    world = await make_world(client)
    address = "0x" + "ab" * 20
    r = await client.post(
        "/v1/tenants/acme/approvers",
        json={"address": address, "roles": ["cfo", "cfo", "ceo"], "name": "Carol CFO"},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 201, r.text
    assert r.json()["address"] == "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"
    assert r.json()["roles"] == ["ceo", "cfo"]
    problem(
        await client.post(
            "/v1/tenants/acme/approvers",
            json={"address": address.upper().replace("0X", "0x"), "roles": ["cfo"]},
            headers=bearer(world.tenant_admin),
        ),
        409,
        "approver_exists",
    )
    problem(
        await client.post(
            "/v1/tenants/acme/approvers",
            json={"address": "0x12", "roles": ["cfo"]},
            headers=bearer(world.tenant_admin),
        ),
        422,
        "invalid_address",
    )
    problem(
        await client.post(
            "/v1/tenants/acme/approvers",
            json={"address": "0x" + "22" * 20, "roles": []},
            headers=bearer(world.tenant_admin),
        ),
        422,
        "invalid_role",
    )
    problem(
        await client.post(
            "/v1/tenants/acme/approvers",
            json={"address": "0x" + "22" * 20, "roles": ["C F O"]},
            headers=bearer(world.tenant_admin),
        ),
        422,
        "invalid_role",
    )
    listed = (await client.get("/v1/tenants/acme/approvers", headers=bearer(world.auditor))).json()
    assert [a["name"] for a in listed] == ["Carol CFO"]
    assert (await verified_log(client, world))[-1].type == "approver.added"


async def test_policies_publish_versions_and_activation(client):
    world = await make_world(client, policy="")
    yaml_headers = {**bearer(world.tenant_admin), "Content-Type": "application/yaml"}
    r = await client.post("/v1/tenants/acme/policies", content=EXAMPLE_POLICY.encode(), headers=yaml_headers)
    assert r.status_code == 201
    v1 = r.json()
    assert (v1["version"], v1["active"]) == (1, True)
    document = (await client.get("/v1/tenants/acme/policies/1", headers=bearer(world.auditor))).json()[
        "document"
    ]
    assert v1["hash"] == "0x" + hashlib.sha256(rfc8785.dumps(document)).hexdigest()
    # the same document as JSON has the same hash
    r = await client.post(
        "/v1/tenants/acme/policies",
        params={"activate": "false"},
        content=json.dumps(document).encode(),
        headers={**bearer(world.tenant_admin), "Content-Type": "application/json"},
    )
    assert r.status_code == 201
    v2 = r.json()
    assert (v2["version"], v2["active"], v2["hash"]) == (2, False, v1["hash"])
    listed = (await client.get("/v1/tenants/acme/policies", headers=bearer(world.auditor))).json()
    assert [(p["version"], p["active"]) for p in listed] == [(1, True), (2, False)]
    r = await client.post("/v1/tenants/acme/policies/2/activate", headers=bearer(world.tenant_admin))
    assert r.status_code == 200 and r.json()["active"] is True
    listed = (await client.get("/v1/tenants/acme/policies", headers=bearer(world.auditor))).json()
    assert [(p["version"], p["active"]) for p in listed] == [(1, False), (2, True)]
    problem(
        await client.post("/v1/tenants/acme/policies/9/activate", headers=bearer(world.tenant_admin)),
        404,
        "policy_not_found",
    )
    problem(
        await client.get("/v1/tenants/acme/policies/9", headers=bearer(world.auditor)),
        404,
        "policy_not_found",
    )
    problem(
        await client.post("/v1/tenants/acme/policies/2/activate", headers=bearer(world.auditor)),
        403,
        "forbidden_role",
    )
    types = [e.type for e in await verified_log(client, world)]
    assert types[-3:] == ["policy.published", "policy.published", "policy.activated"]


async def test_invalid_policy_lists_every_problem_and_changes_nothing(client):
    world = await make_world(client, policy="")
    bad = """
schema: verdict.policy/v1
rules:
  - id: a
    decision: ALLOW
    match: {action.vendor: {in: no_such_list}}
  - id: a
    decision: ESCALATE
    match: {action.amount: {gt: 5000.5}}
  - id: c
    decision: DENY
    when: 'action.amount >'
"""
    before = len(await verified_log(client, world))
    r = await client.post(
        "/v1/tenants/acme/policies",
        content=bad.encode(),
        headers={**bearer(world.tenant_admin), "Content-Type": "application/yaml"},
    )
    body = problem(r, 422, "policy_invalid")
    assert len(body["problems"]) >= 4
    assert {p["rule"] for p in body["problems"]} >= {"a", "c"}
    assert all({"path", "rule", "message"} <= set(p) for p in body["problems"])
    assert (await client.get("/v1/tenants/acme/policies", headers=bearer(world.auditor))).json() == []
    assert len(await verified_log(client, world)) == before
    r = await client.post(
        "/v1/tenants/acme/policies",
        content=b"schema: [",
        headers={**bearer(world.tenant_admin), "Content-Type": "application/yaml"},
    )
    problem(r, 400, "invalid_yaml")  # unreadable: refused at intake, as invalid JSON is
    r = await client.post(
        "/v1/tenants/acme/policies",
        content=b"<xml/>",
        headers={**bearer(world.tenant_admin), "Content-Type": "application/xml"},
    )
    problem(r, 415, "unsupported_media_type")


async def test_health_docs_and_unknown_routes(client):
    r = await client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "/v1/agents/{agent_id}/propose" in paths and "/v1/tenants" in paths
    assert (await client.get("/schema")).status_code == 200
    problem(await client.get("/v1/nope"), 404, "not_found")
    problem(await client.delete("/v1/tenants"), 405, "method_not_allowed")


async def test_audit_entries_range_checks(client):
    world = await make_world(client)
    r = await client.get(
        "/v1/tenants/acme/audit/entries", params={"start": 3, "end": 2}, headers=bearer(world.auditor)
    )
    problem(r, 400, "invalid_range")
    r = await client.get(
        "/v1/tenants/acme/audit/entries", params={"start": 0, "end": 999}, headers=bearer(world.auditor)
    )
    problem(r, 400, "invalid_range")
    problem(
        await client.get("/v1/tenants/acme/audit/entries", headers=bearer(world.agent_token)),
        403,
        "forbidden_role",
    )


async def test_405_names_the_allowed_methods(client):
    r = await client.delete("/v1/tenants")
    assert r.status_code == 405
    assert "POST" in r.headers["allow"]


async def test_openapi_documents_problems_and_public_routes(client):
    spec = (await client.get("/schema/openapi.json")).json()
    propose = spec["paths"]["/v1/agents/{agent_id}/propose"]["post"]
    assert "application/problem+json" in propose["responses"]["401"]["content"]
    assert propose["security"] == [{"bearer": []}]
    assert "security" not in spec["paths"]["/health"]["get"]
    assert "security" not in spec["paths"]["/v1/keys"]["get"]
    assert "security" not in spec
