"""The `operations` of an action, walked on both backends: for every state an action can be in
and every kind of caller, what the list offers is exactly what the routes accept. Each operation
not offered is tried and refused (4xx, nothing changes); each one offered is tried on a fresh
action in the same state and accepted. Also: rollback from the action."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from eth_account import Account
from litestar.testing import AsyncTestClient

from tests.bank import ReferenceBank
from tests.integration.execution_helpers import configure_bank_rail, fast_executor_env, wait_for
from tests.integration.helpers import EXAMPLE_POLICY, World, bearer, make_world, pay

CFO = Account.from_key("0x" + "11" * 32)
CONTROLLER = Account.from_key("0x" + "22" * 32)
STRANGER = Account.from_key("0x" + "55" * 32)
SIGNERS = {"cfo": CFO, "controller": CONTROLLER, "stranger": STRANGER}
TOKEN_OPERATIONS = ("verdict", "cancel", "execute", "rollback")
ROLES = ("cfo", "controller", "ceo")
SHORT_TTL = EXAMPLE_POLICY.replace("verdict_ttl_seconds: 60", "verdict_ttl_seconds: 1")


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    fast_executor_env(monkeypatch)


@pytest.fixture
async def client(backend):
    """The public routes' per-address limit out of the way: the walk calls them often."""
    from gateway.app import create_app

    app = create_app(backend.settings(public_rate_per_second=10_000.0, public_burst=100_000))
    async with AsyncTestClient(app=app) as test_client:
        test_client.app_state = app.state
        yield test_client


@pytest.fixture
def bank():
    with ReferenceBank() as running:
        yield running


def sign(account: Any, typed_data: dict[str, Any]) -> str:
    return "0x" + account.sign_typed_data(full_message=typed_data).signature.hex().removeprefix("0x")


class Scene:
    """Two tenants' worlds (one with 1 s verdicts) with approvers and rails, and builders of
    actions in each state."""

    def __init__(self, client: Any, world: World, short: World) -> None:
        self.client, self.world, self.short = client, world, short

    async def propose(self, world: World, amount: str, **extra: Any) -> str:
        r = await self.client.post(
            f"/v1/agents/{world.agent}/propose", json=pay(amount, rail="bank_api", **extra),
            headers=bearer(world.agent_token),
        )  # fmt: skip
        assert r.status_code == 201, r.text
        return r.json()["action_id"]

    async def answer(self, action_id: str, account: Any, role: str, approve: bool) -> Any:
        r = await self.client.get(
            f"/v1/actions/{action_id}/approval-request",
            params={"role": role, "approve": str(approve).lower()},
        )
        # where the request itself is refused, sign anything: the route refuses before it looks
        signature = sign(account, r.json()) if r.status_code == 200 else "0x" + "11" * 64 + "1b"
        path = "approve" if approve else "reject"
        return await self.client.post(
            f"/v1/actions/{action_id}/{path}", json={"approver_role": role, "signature": signature}
        )

    async def executed(self, rail: str = "bank_api") -> str:
        action_id = await self.propose(self.world, "120.00") if rail == "bank_api" else None
        if action_id is None:
            r = await self.client.post(
                f"/v1/agents/{self.world.agent}/propose", json=pay("120.00", rail=rail),
                headers=bearer(self.world.agent_token),
            )  # fmt: skip
            action_id = r.json()["action_id"]
        r = await self.client.post(
            f"/v1/actions/{action_id}/execute", json={}, headers=bearer(self.world.agent_token)
        )
        assert r.status_code == 202, r.text
        await wait_for(self.client, self.world, r.json()["execution_id"])
        return action_id

    async def build(self, state: str) -> tuple[World, str]:
        world = self.world
        if state == "allowed":
            return world, await self.propose(world, "120.00")
        if state == "verdict_expired":
            action_id = await self.propose(self.short, "120.00")
            r = await self.client.get(f"/v1/actions/{action_id}", headers=bearer(self.short.agent_token))
            expires = int(r.json()["signed_verdict"]["typed_data"]["message"]["expiresAt"])
            while time.time() < expires + 0.01:  # not a timed assertion: wait until the clock passed it
                time.sleep(0.05)
            return self.short, action_id
        if state == "denied":
            return world, await self.propose(world, "120.00", vendor="evil-corp")
        action_id = await self.propose(world, "60000.00")  # 2 of cfo, controller, ceo
        if state == "pending":
            return world, action_id
        if state == "pending_cfo_answered":
            assert (await self.answer(action_id, CFO, "cfo", True)).status_code == 200
        elif state == "approved":
            for account, role in ((CFO, "cfo"), (CONTROLLER, "controller")):
                assert (await self.answer(action_id, account, role, True)).status_code == 200
        elif state == "rejected":
            assert (await self.answer(action_id, CFO, "cfo", False)).status_code == 200
        elif state == "cancelled":
            r = await self.client.delete(f"/v1/actions/{action_id}", headers=bearer(world.agent_token))
            assert r.status_code == 200, r.text
        elif state == "succeeded":
            action_id = await self.executed()
        elif state == "succeeded_irreversible":
            action_id = await self.executed("oneway")
        elif state == "rolled_back":
            action_id = await self.executed()
            r = await self.rollback(action_id)
            assert r.status_code == 202, r.text
            await wait_for(
                self.client, world, r.json()["execution_id"], ("rolled_back",), token=world.tenant_admin
            )
        return world, action_id

    async def rollback(self, action_id: str, token: str | None = None) -> Any:
        return await self.client.post(
            f"/v1/actions/{action_id}/rollback", json={"reason": "duplicate invoice"},
            headers=bearer(token or self.world.tenant_admin),
        )  # fmt: skip

    def token(self, world: World, caller: str) -> str:
        return {"agent": world.agent_token, "tenant_admin": world.tenant_admin, "auditor": world.auditor}[
            caller
        ]

    async def offered(self, world: World, caller: str, action_id: str) -> set[tuple[str, str | None]]:
        """What the caller is offered: (name, role) pairs; the record and the list agree."""
        if caller in SIGNERS:
            r = await self.client.get(
                f"/v1/actions/{action_id}/operations", params={"signer": SIGNERS[caller].address.lower()}
            )
            assert r.status_code == 200, r.text
            operations = r.json()["operations"]
        else:
            headers = bearer(self.token(world, caller))
            r = await self.client.get(f"/v1/actions/{action_id}", headers=headers)
            assert r.status_code == 200, r.text
            operations = r.json()["operations"]
            page = await self.client.get("/v1/actions", params={"limit": 100}, headers=headers)
            listed = next(a for a in page.json()["actions"] if a["action_id"] == action_id)
            assert listed["operations"] == operations
        for operation in operations:
            suffix = "" if operation["name"] == "cancel" else "/" + operation["name"]
            assert operation["path"] == f"/v1/actions/{action_id}{suffix}"
        return {(o["name"], o.get("role")) for o in operations}

    async def attempt(self, world: World, caller: str, action_id: str, name: str, role: str | None) -> Any:
        """Call the operation's route as the caller."""
        if caller in SIGNERS:
            return await self.answer(action_id, SIGNERS[caller], role or "", name == "approve")
        headers = bearer(self.token(world, caller))
        path = f"/v1/actions/{action_id}"
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "verdict": lambda: self.client.get(path + "/verdict", headers=headers),
            "cancel": lambda: self.client.delete(path, headers=headers),
            "execute": lambda: self.client.post(path + "/execute", json={}, headers=headers),
            "rollback": lambda: self.rollback(action_id, self.token(world, caller)),
        }
        return await calls[name]()


def candidates(caller: str) -> list[tuple[str, str | None]]:
    if caller in SIGNERS:
        return [(name, role) for role in ROLES for name in ("approve", "reject")]
    return [(name, None) for name in TOKEN_OPERATIONS]


STATES = (
    "pending", "pending_cfo_answered", "allowed", "verdict_expired", "denied", "approved", "rejected",
    "cancelled", "succeeded", "succeeded_irreversible", "rolled_back",
)  # fmt: skip
CALLERS = ("agent", "tenant_admin", "auditor", "cfo", "controller", "stranger")
# What the walk must find (a check that the scenes are the states they claim to be).
EXPECTED = {
    ("pending", "agent"): {("cancel", None)},
    ("pending", "tenant_admin"): {("cancel", None)},
    ("pending", "cfo"): {("approve", "cfo"), ("reject", "cfo")},
    ("pending", "controller"): {("approve", "controller"), ("reject", "controller")},
    ("pending_cfo_answered", "controller"): {("approve", "controller"), ("reject", "controller")},
    ("allowed", "agent"): {("verdict", None), ("execute", None)},
    ("allowed", "tenant_admin"): {("verdict", None), ("execute", None)},
    ("allowed", "auditor"): {("verdict", None)},
    ("verdict_expired", "agent"): {("verdict", None)},
    ("approved", "agent"): {("verdict", None), ("execute", None)},
    ("succeeded", "agent"): {("verdict", None)},
    ("succeeded", "tenant_admin"): {("verdict", None), ("rollback", None)},
    ("succeeded_irreversible", "tenant_admin"): {("verdict", None)},
    ("rolled_back", "tenant_admin"): {("verdict", None)},
    ("denied", "agent"): set(),
    ("rejected", "cfo"): set(),
}


async def test_operations_offer_exactly_what_the_routes_accept(client, bank):
    world = await make_world(client)
    short = await make_world(client, tenant="globex", policy=SHORT_TTL)
    for each in (world, short):
        for account, roles in ((CFO, ["cfo"]), (CONTROLLER, ["controller"])):
            r = await client.post(
                f"/v1/tenants/{each.tenant}/approvers", json={"address": account.address, "roles": roles},
                headers=bearer(each.tenant_admin),
            )  # fmt: skip
            assert r.status_code == 201, r.text
        await configure_bank_rail(client, each, bank)
    await configure_bank_rail(client, world, bank, name="oneway", reversible=False)
    scene = Scene(client, world, short)
    found: dict[tuple[str, str], set[tuple[str, str | None]]] = {}
    for state in STATES:
        base_world, base = await scene.build(state)
        for caller in CALLERS:
            offered = await scene.offered(base_world, caller, base)
            found[state, caller] = offered
            for name, role in candidates(caller):
                if (name, role) in offered:
                    continue
                r = await scene.attempt(base_world, caller, base, name, role)
                assert 400 <= r.status_code < 500, (state, caller, name, role, r.text)
            assert await scene.offered(base_world, caller, base) == offered  # refusals changed nothing
        for caller in CALLERS:
            for name, role in sorted(found[state, caller], key=str):
                fresh_world, fresh = await scene.build(state)
                r = await scene.attempt(fresh_world, caller, fresh, name, role)
                assert r.status_code in (200, 202), (state, caller, name, role, r.text)
    for key, want in EXPECTED.items():
        assert found[key] == want, (key, found[key])


async def test_rollback_from_the_action(client, bank):
    world = await make_world(client)
    await configure_bank_rail(client, world, bank)
    scene = Scene(client, world, world)
    allowed = await scene.propose(world, "120.00")
    r = await scene.rollback(allowed)
    assert r.status_code == 409 and r.json()["code"] == "not_executed", r.text
    r = await scene.rollback(allowed, world.agent_token)
    assert r.status_code == 403 and r.json()["code"] == "forbidden_role"
    r = await client.post(
        f"/v1/actions/{allowed}/rollback", json={"reason": " "}, headers=bearer(world.tenant_admin)
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_reason"
    other = await make_world(client, tenant="globex")
    action_id = await scene.executed()
    r = await scene.rollback(action_id, other.tenant_admin)
    assert r.status_code == 404 and r.json()["code"] == "action_not_found"
    r = await scene.rollback(action_id)
    assert r.status_code == 202, r.text
    execution_id = r.json()["execution_id"]
    record = (await client.get(f"/v1/actions/{action_id}", headers=bearer(world.auditor))).json()
    assert [e["execution_id"] for e in record["executions"]] == [execution_id]
    again = await scene.rollback(action_id)
    assert again.status_code == 409 and again.json()["code"] in (
        "rollback_in_progress",
        "execution_not_succeeded",
    )
    done = await wait_for(client, world, execution_id, ("rolled_back",), token=world.tenant_admin)
    assert done["rollback"]["status"] == "succeeded" and len(bank.ledger.reversals) == 1
    r = await scene.rollback(action_id)
    assert r.status_code == 409 and r.json()["code"] == "execution_not_succeeded"
    # the same answers as the execution's own route
    r = await client.post(
        f"/v1/executions/{execution_id}/rollback",
        json={"reason": "again"},
        headers=bearer(world.tenant_admin),
    )
    assert r.status_code == 409 and r.json()["code"] == "execution_not_succeeded"


async def test_signer_operations_refuse_a_bad_address_and_a_missing_action(client):
    world = await make_world(client)
    action_id = await Scene(client, world, world).propose(world, "60000.00")
    r = await client.get(f"/v1/actions/{action_id}/operations", params={"signer": "0x1234"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_address"
    r = await client.get(f"/v1/actions/{action_id}/operations")
    assert r.status_code == 200 and r.json() == {
        "action_id": action_id,
        "status": "pending_approval",
        "operations": [],
    }
    r = await client.get(
        "/v1/actions/act_0000000000000000000000000n/operations", params={"signer": CFO.address}
    )
    assert r.status_code == 404 and r.json()["code"] == "action_not_found"
