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


NOT_AMOUNTS = ["-5", "-0", "-0.00", "NaN", "1e309", "+7800", "7_800", "\uff17\uff18\uff10\uff10", "7800.", "", "lots",
               ".5", "007", " 7800", "7800 ", "7800\n", "1" * 79, "0x1F", "Infinity", "\u0663"]  # fmt: skip
AMOUNTS = ["0", "0.00", "7800", "7800.00", "0.000000000000000001", "1" * 78, "9" * 40 + "." + "9" * 38]


@pytest.mark.parametrize("amount", NOT_AMOUNTS)
async def test_an_amount_that_is_not_a_plain_decimal_is_refused_at_intake(client, audit_size, amount):
    """Issue 11 item 2: these reached the policy (201 DENY `policy_error:…`), and "-5" was allowed."""
    world = await make_world(client)
    before = await audit_size()
    r = await client.post("/v1/agents/ap-bot/propose", json=pay(amount), headers=bearer(world.agent_token))
    assert problem_code(r) == (422, "invalid_amount"), r.text
    assert r.json()["field"] == "action.amount"
    assert await audit_size() == before


@pytest.mark.parametrize("amount", AMOUNTS)
async def test_plain_decimal_amounts_are_decided(client, amount):
    world = await make_world(client)
    r = await client.post("/v1/agents/ap-bot/propose", json=pay(amount), headers=bearer(world.agent_token))
    assert r.status_code == 201, r.text


async def test_amounts_are_checked_without_an_active_policy(client, audit_size):
    world = await make_world(client, policy="")
    before = await audit_size()
    r = await client.post("/v1/agents/ap-bot/propose", json=pay("-5"), headers=bearer(world.agent_token))
    assert problem_code(r) == (422, "invalid_amount"), r.text
    assert await audit_size() == before
    r = await client.post("/v1/agents/ap-bot/propose", json=pay("5"), headers=bearer(world.agent_token))
    assert (r.status_code, r.json()["reason"]) == (201, "no_active_policy"), r.text


DECLARED_AMOUNTS = """
schema: verdict.policy/v1
action_types:
  refund:
    amount_field: payment.value
    amount_fields: [fee, payment.tip]
    allow_negative: true
  pay_invoice: {}
undeclared_types: allow
limits:
  - {id: fx, per: agent, window: 24h, sum: action.fx_total, max: "1000000", decision: DENY}
rules:
  - {id: everything, decision: ALLOW, match: {action.type: {in: [refund, pay_invoice, other]}}}
"""


async def test_declared_amount_fields_and_negative_amounts(client, audit_size):
    world = await make_world(client, policy=DECLARED_AMOUNTS)
    agent = bearer(world.agent_token)

    async def propose(action: dict) -> tuple[int, str | None, str | None]:
        r = await client.post("/v1/agents/ap-bot/propose", json={"action": action}, headers=agent)
        body = r.json()
        return r.status_code, body.get("code"), body.get("field")

    before = await audit_size()
    refused = [
        ({"type": "refund", "payment": {"value": "1e3"}}, "action.payment.value"),
        ({"type": "refund", "payment": {"value": "-5", "tip": "+1"}}, "action.payment.tip"),
        ({"type": "refund", "payment": {"value": "-5"}, "fee": 3}, "action.fee"),
        ({"type": "pay_invoice", "amount": "-5"}, "action.amount"),  # not allowed for this type
        ({"type": "other", "amount": "-0"}, "action.amount"),  # undeclared: `amount`, no negatives
        ({"type": "other", "amount": "5", "fx_total": "5e2"}, "action.fx_total"),  # a limit sums it
        ({"type": "pay_invoice", "fx_total": "-1"}, "action.fx_total"),
    ]
    for action, field in refused:
        assert await propose(action) == (422, "invalid_amount", field), action
    assert await audit_size() == before
    allowed = [
        {"type": "refund", "payment": {"value": "-5.00", "tip": "-0.5"}, "fee": "-0", "amount": "lots"},
        {"type": "pay_invoice", "amount": "5", "fx_total": "7"},
        {"type": "other", "amount": "5", "fee": "not an amount here"},
    ]
    for action in allowed:
        status, _, _ = await propose(action)
        assert status == 201, action


@pytest.mark.parametrize(
    ("declaration", "path"),
    [
        ("{amount_fields: []}", "action_types.t.amount_fields"),
        ("{amount_fields: fee}", "action_types.t.amount_fields"),
        ("{amount_fields: [fee, fee]}", "action_types.t.amount_fields[1]"),
        ("{amount_fields: ['a..b']}", "action_types.t.amount_fields[0]"),
        ("{allow_negative: 'yes'}", "action_types.t.allow_negative"),
    ],
)
async def test_amount_declarations_are_validated(client, declaration, path):
    world = await make_world(client, policy="")
    document = f"schema: verdict.policy/v1\naction_types: {{t: {declaration}}}\nrules: [{{id: r, decision: DENY, match: {{action.type: {{eq: t}}}}}}]\n"
    r = await client.post(
        "/v1/tenants/acme/policies",
        content=document.encode(),
        headers={**bearer(world.tenant_admin), "Content-Type": "application/yaml"},
    )
    assert problem_code(r) == (422, "policy_invalid"), r.text
    assert path in [p["path"] for p in r.json()["problems"]], r.text
