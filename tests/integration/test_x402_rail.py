"""The `x402` rail on both backends against a resource server built with the `x402` package
(its FastAPI middleware and its own facilitator, settling on the in-process chain)."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from eth_account import Account

from gateway.rails.base import ABSENT, SUCCEEDED, Payment
from gateway.rails.x402 import X402Rail, check_config, nonce_of
from tests.chain import TEST_TOKEN_ARTIFACT
from tests.integration.execution_helpers import execute, fast_executor_env, wait_for
from tests.integration.helpers import bearer, make_world
from tests.x402_server import PAY_TO, PaidResource, mint, token_balance

X402_POLICY = """\
schema: verdict.policy/v1
default: DENY
verdict_ttl_seconds: 300
rules:
  - id: small-api-payments
    decision: ALLOW
    match: {action.type: {eq: x402_payment}, action.max_amount: {lte: "1"}}
"""


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    fast_executor_env(monkeypatch)


class Buyer:
    def __init__(self, client, world, chain, token: str) -> None:
        self.client, self.world, self.chain, self.token = client, world, chain, token
        self.payer = Account.from_key("0x" + secrets.token_hex(32))

    async def configure(self) -> None:
        body = {"kind": "x402", "config": {"payer_key": "0x" + bytes(self.payer.key).hex(),
                                            "rpc_url": self.chain.rpc_url, "timeout_seconds": 20}}  # fmt: skip
        r = await self.client.put(f"/v1/tenants/{self.world.tenant}/rails/x402", json=body,
                                  headers=bearer(self.world.tenant_admin))  # fmt: skip
        assert r.status_code == 200, r.text
        assert "payer_key" not in str(r.json()["config"])

    async def propose(self, url: str, max_amount: str = "0.05", **changes) -> dict:
        action = {"type": "x402_payment", "url": url, "max_amount": max_amount, "asset": self.token.lower(),
                  "network": f"eip155:{self.chain.chain_id}", **changes}  # fmt: skip
        r = await self.client.post(f"/v1/agents/{self.world.agent}/propose", json={"action": action},
                                   headers=bearer(self.world.agent_token))  # fmt: skip
        assert r.status_code == 201 and r.json()["decision"] == "ALLOW", r.text
        return r.json()

    async def pay(self, url: str, **changes) -> tuple[dict, dict]:
        proposed = await self.propose(url, **changes)
        r = await execute(self.client, self.world, proposed["action_id"])
        assert r.status_code == 202, r.text
        return proposed, await wait_for(self.client, self.world, r.json()["execution_id"], timeout=60)


@pytest.fixture
async def buyer(client, contract_chain):
    world = await make_world(client, policy=X402_POLICY)
    token = contract_chain.deploy(TEST_TOKEN_ARTIFACT, "Test USD", "TUSD", 6)
    buyer = Buyer(client, world, contract_chain, token)
    mint(contract_chain, token, buyer.payer.address, 1_000_000)  # 1 TUSD
    await buyer.configure()
    return buyer


async def test_paid_and_served(buyer):
    chain, token = buyer.chain, buyer.token
    with PaidResource(chain, token, amount="10000") as resource:
        before = token_balance(chain, token, PAY_TO)
        proposed, done = await buyer.pay(resource.url)
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert result["http_status"] == 200 and result["body_bytes"] > 0 and len(result["body_sha256"]) == 64
    assert result["amount"] == "10000" and result["pay_to"].lower() == PAY_TO
    assert done["reference"] == result["transaction_hash"] and done["reference"].startswith("0x")
    assert result["nonce"] == nonce_of(done["execution_id"])
    assert token_balance(chain, token, PAY_TO) == before + 10_000
    assert token_balance(chain, token, buyer.payer.address) == 990_000
    # the resource's answer is kept for the agent; the log holds its hash
    r = await buyer.client.get(
        f"/v1/executions/{done['execution_id']}/result", headers=bearer(buyer.world.agent_token)
    )
    assert r.status_code == 200, r.text
    stored = r.json()
    assert json.loads(base64.b64decode(stored["body_base64"])) == {"report": "quarterly numbers"}
    assert stored["sha256"] == result["body_sha256"] and stored["content_type"] == "application/json"
    # the chain knows the authorization was used: asking again never pays again
    rail = X402Rail(check_config({"payer_key": "0x" + bytes(buyer.payer.key).hex(), "rpc_url": chain.rpc_url}),
                    {"payer_key": "0x" + bytes(buyer.payer.key).hex()})  # fmt: skip
    action = {"type": "x402_payment", "url": resource.url, "max_amount": "0.05", "asset": token.lower(),
              "network": f"eip155:{chain.chain_id}"}  # fmt: skip
    for execution_id, state in ((done["execution_id"], SUCCEEDED), ("exe_other", ABSENT)):
        payment = Payment(execution_id, execution_id, "t", proposed["action_id"], "0x", action,
                          proposed["signed_verdict"])  # fmt: skip
        assert (await rail.status(payment)).state == state
    await rail.close()


async def test_requirements_above_max_amount_are_refused_unsigned(buyer):
    with PaidResource(buyer.chain, buyer.token, amount="100000") as resource:  # 0.10 > 0.05
        _, done = await buyer.pay(resource.url)
    assert done["status"] == "failed" and done["code"] == "requirements_exceed_verdict", done
    assert token_balance(buyer.chain, buyer.token, buyer.payer.address) == 1_000_000


@pytest.mark.parametrize("change", ["asset", "network"])
async def test_another_asset_or_network_is_refused(buyer, change):
    other = {"asset": "0x" + "ee" * 20, "network": "eip155:1"}[change]
    with PaidResource(buyer.chain, buyer.token, amount="10000") as resource:
        _, done = await buyer.pay(resource.url, **{change: other})
    assert done["status"] == "failed" and done["code"] == "requirements_exceed_verdict", done
    assert token_balance(buyer.chain, buyer.token, buyer.payer.address) == 1_000_000


async def test_a_refused_payment_fails_and_moves_nothing(buyer):
    # the facilitator refuses: the payer holds none of this token (it verifies before settling)
    empty = buyer.chain.deploy(TEST_TOKEN_ARTIFACT, "Test USD", "TUSD", 6)
    with PaidResource(buyer.chain, empty, amount="1000") as resource:
        _, done = await buyer.pay(resource.url, asset=empty.lower())
    assert done["status"] == "failed" and done["code"] == "payment_refused", done
    assert token_balance(buyer.chain, empty, PAY_TO) == 0
    r = await buyer.client.get(
        f"/v1/executions/{done['execution_id']}/result", headers=bearer(buyer.world.agent_token)
    )
    assert r.status_code == 409 and r.json()["code"] == "result_not_stored", r.text


async def test_the_same_execution_always_signs_the_same_authorization(buyer):
    """A gateway killed between signing and the retry signs, on the next attempt, the very same
    authorization (same nonce, same signature): never a second one for one execution."""
    proposed = await buyer.propose("https://resource.example/report")
    option = {"scheme": "exact", "network": f"eip155:{buyer.chain.chain_id}", "asset": buyer.token,
              "amount": "10000", "payTo": PAY_TO, "maxTimeoutSeconds": 300,
              "extra": {"name": "Test USD", "version": "2"}}  # fmt: skip
    key = "0x" + bytes(buyer.payer.key).hex()
    rail = X402Rail(check_config({"payer_key": key, "rpc_url": buyer.chain.rpc_url}), {"payer_key": key})
    payment = Payment("exe_1", "exe_1", "t", proposed["action_id"], "0x", {}, proposed["signed_verdict"])
    first = rail._authorization(payment, option, 2)
    again = rail._authorization(payment, option, 2)
    other = rail._authorization(Payment("exe_2", "exe_2", "t", proposed["action_id"], "0x", {},
                                        proposed["signed_verdict"]), option, 2)  # fmt: skip
    assert first == again
    assert other["authorization"]["nonce"] != first["authorization"]["nonce"]
    await rail.close()


class LosingProxy:
    """Forwards to the resource; the first paid request is forwarded (the payment settles) but
    answered 502, as a gateway killed after the retry was sent would never have heard it."""

    def __init__(self, target: str) -> None:
        self.paid_requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower().startswith("payment")}
                answer = httpx.get(target, headers=headers, timeout=30)
                status, body, out = answer.status_code, answer.content, dict(answer.headers)
                if "PAYMENT-SIGNATURE" in {k.upper() for k in headers}:
                    proxy.paid_requests += 1
                    if proxy.paid_requests == 1:
                        status, body, out = 502, b"{}", {}
                self.send_response(status)
                for name, value in out.items():
                    if name.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "date",
                        "server",
                    ):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/report"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


async def test_a_lost_answer_after_paying_is_found_on_the_token_and_never_paid_again(buyer):
    chain, token = buyer.chain, buyer.token
    with PaidResource(chain, token, amount="10000") as resource:
        proxy = LosingProxy(resource.url)
        try:
            _, done = await buyer.pay(proxy.url)
        finally:
            proxy.stop()
    assert done["status"] == "succeeded", done
    assert done["attempts"] >= 2 and done["result"]["nonce"] == nonce_of(done["execution_id"])
    assert proxy.paid_requests == 1  # the retry asked the token, it did not pay again
    assert token_balance(chain, token, PAY_TO) == 10_000
    assert token_balance(chain, token, buyer.payer.address) == 990_000
