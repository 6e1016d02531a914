"""Values the database cannot take are refused at intake, the same way on both backends (issue 11).

NUL characters (PostgreSQL refuses them in text: a 500 there, stored on SQLite) and integers
beyond 64 bits (asyncpg cannot encode them: a 500 on both) never reach the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.audit_count import AuditCount
from tests.integration.helpers import bearer, make_world, pay

BEYOND_64_BITS = ("9223372036854775808", "-9223372036854775809", "1" + "0" * 40)


@pytest.fixture
async def audit_size(backend, client) -> AsyncIterator[AuditCount]:
    count = AuditCount(backend)
    await count.db.open()
    try:
        yield count
    finally:
        await count.db.close()


def problem_code(r) -> tuple[int, str]:
    assert r.headers["content-type"] == "application/problem+json", r.text
    return r.status_code, r.json()["code"]


@pytest.mark.parametrize(
    "body",
    [
        pay(vendor="acme\u0000supplies"),
        pay(invoice_id="inv\u0000"),
        {**pay(), "rationale": "because\u0000"},
        {**pay(), "metadata": {"note\u0000": "x"}},
        {**pay(), "metadata": {"tags": ["a", "\u0000"]}},
        {"action": {"type": "pay\u0000invoice", "amount": "1.00", "asset": "USDC", "vendor": "v"}},
    ],
)
async def test_nul_in_a_proposal_is_refused_at_intake(client, audit_size, body):
    world = await make_world(client)
    before = await audit_size()
    r = await client.post("/v1/agents/ap-bot/propose", json=body, headers=bearer(world.agent_token))
    assert problem_code(r) == (400, "nul_character"), r.text
    assert await audit_size() == before


async def test_nul_in_names_paths_and_queries_is_refused_at_intake(client, audit_size):
    world = await make_world(client)
    admin, tenant_admin = bearer(world.admin_token), bearer(world.tenant_admin)
    before = await audit_size()
    attempts = [
        ("POST", "/v1/tenants", {"id": "nul", "name": "N\u0000"}, admin),
        ("POST", "/v1/tenants/acme/agents", {"id": "bot2", "name": "B\u0000"}, tenant_admin),
        (
            "POST",
            "/v1/tenants/acme/approvers",
            {"address": "0x" + "ab" * 20, "name": "\u0000", "roles": ["cfo"]},
            tenant_admin,
        ),
        ("PATCH", "/v1/tenants/acme", {"name": "x\u0000"}, tenant_admin),
        ("GET", "/v1/actions/act_%00", None, bearer(world.agent_token)),
        ("DELETE", "/v1/actions/act_%00", None, bearer(world.agent_token)),
        ("GET", "/v1/tenants/ac%00me/agents", None, tenant_admin),
        ("GET", "/v1/tenants/acme/agents/ap-bot%00/scope", None, tenant_admin),
        ("DELETE", "/v1/tenants/acme/api-keys/key%00", None, tenant_admin),
        ("GET", "/v1/actions?tenant_id=acme&vendor=%00&status=a%00", None, tenant_admin),
        ("GET", "/v1/actions/act_x/approval-request?role=cfo%00", None, {}),
        ("GET", "/v1/tenants/acme/approvers/0x%00", None, tenant_admin),
    ]
    for method, url, body, headers in attempts:
        r = await client.request(method, url, json=body, headers=headers)
        assert problem_code(r) == (400, "nul_character"), f"{method} {url}: {r.text}"
    assert await audit_size() == before


@pytest.mark.parametrize("number", BEYOND_64_BITS)
async def test_path_integers_beyond_64_bits_are_not_found(client, audit_size, number):
    world = await make_world(client)
    before = await audit_size()
    r = await client.get(f"/v1/tenants/acme/policies/{number}", headers=bearer(world.auditor))
    assert problem_code(r) == (404, "not_found"), r.text
    r = await client.post(f"/v1/tenants/acme/policies/{number}/activate", headers=bearer(world.tenant_admin))
    assert problem_code(r) == (404, "not_found"), r.text
    assert await audit_size() == before


@pytest.mark.parametrize("number", BEYOND_64_BITS)
async def test_query_integers_beyond_64_bits_are_refused(client, number):
    world = await make_world(client)
    auditor = bearer(world.auditor)
    for url in (
        f"/v1/tenants/acme/audit/entries?start={number}",
        f"/v1/tenants/acme/audit/entries?start=0&end={number}",
        f"/v1/tenants/acme/audit/checkpoint?size={number}",
        f"/v1/tenants/acme/audit/proof/inclusion?index={number}&size=1",
        f"/v1/tenants/acme/audit/proof/inclusion?index=0&size={number}",
        f"/v1/tenants/acme/audit/proof/consistency?from={number}&to=1",
        f"/v1/tenants/acme/audit/proof/consistency?from=0&to={number}",
        f"/v1/actions?tenant_id=acme&limit={number}",
    ):
        r = await client.get(url, headers=auditor)
        assert problem_code(r)[0] == 400, f"{url}: {r.text}"
    r = await client.post(
        f"/v1/tenants/acme/policies/simulate?last={number}",
        content=b"schema: verdict.policy/v1\nrules: [{id: r, decision: DENY, match: {action.type: {eq: x}}}]\n",
        headers={**bearer(world.tenant_admin), "Content-Type": "application/yaml"},
    )
    assert problem_code(r)[0] == 400, r.text
