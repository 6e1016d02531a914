"""The `smart_account` rail on both backends against the in-process py-evm chain: an allowed
evm_call moves funds through the VerdictAccount once, its transaction hash is in the execution
entry and the proof bundle verifies offline; a lost answer is found on chain, never sent twice;
the account's refusal is the execution's failure code."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from eth_account import Account
from eth_utils import to_checksum_address

from audit.bundle import verify_bundle
from crypto.evm_call import evm_call
from tests.chain import VERDICT_ACCOUNT_ARTIFACT, ContractChain
from tests.integration.execution_helpers import entries_of, execute, fast_executor_env, wait_for
from tests.integration.helpers import bearer, make_world, verified_log
from tests.unit.contracts.onchain import balance, rpc

VERIFYING_CONTRACT = to_checksum_address("0x" + "ab" * 20)
RECIPIENT = to_checksum_address("0x" + "5e" * 20)
EVM_POLICY = """\
schema: verdict.policy/v1
default: DENY
verdict_ttl_seconds: 300
rules:
  - id: large-calls
    decision: ESCALATE
    reason: above_limit
    match: {action.type: {eq: evm_call}, action.value: {gt: "1000000"}}
    approvals: {threshold: 1, roles: [cfo]}
  - id: allow-calls
    decision: ALLOW
    match: {action.type: {eq: evm_call}}
"""


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    fast_executor_env(monkeypatch)


def fund(chain: ContractChain, to: str, wei: int) -> None:
    sender = rpc(chain, "eth_accounts")["result"][0]
    answer = rpc(
        chain, "eth_sendTransaction", {"from": sender, "to": to, "value": hex(wei), "gas": hex(100_000)}
    )
    assert "result" in answer, answer


class Onchain:
    """A tenant on the chain: its VerdictAccount (authorising the gateway's verdict signer) and a relayer."""

    def __init__(self, chain: ContractChain, client, world, signers: list[str] | None = None) -> None:
        self.chain, self.client, self.world = chain, client, world
        owner = to_checksum_address(rpc(chain, "eth_accounts")["result"][0])
        gateway_signer = client.app_state.keyring.active("verdict").public
        self.account = chain.deploy(
            VERDICT_ACCOUNT_ARTIFACT, owner, chain.chain_id, VERIFYING_CONTRACT, signers or [gateway_signer]
        )
        fund(chain, self.account, 10**18)
        self.relayer = Account.from_key("0x" + secrets.token_hex(32))
        fund(chain, self.relayer.address, 10**18)

    async def configure(self, rpc_url: str | None = None, name: str = "smart_account") -> None:
        body = {"kind": "smart_account", "config": {
            "rpc_url": rpc_url or self.chain.rpc_url, "chain_id": self.chain.chain_id, "account": self.account,
            "relayer_key": "0x" + bytes(self.relayer.key).hex(), "receipt_timeout_seconds": 10,
        }}  # fmt: skip
        r = await self.client.put(
            f"/v1/tenants/{self.world.tenant}/rails/{name}",
            json=body,
            headers=bearer(self.world.tenant_admin),
        )
        assert r.status_code == 200, r.text
        assert "relayer_key" not in json.dumps(r.json()["config"])

    async def propose(self, wei: int, to: str = RECIPIENT, account: str | None = None) -> str:
        action = evm_call(account or self.account, self.chain.chain_id, to, wei).action()
        r = await self.client.post(
            f"/v1/agents/{self.world.agent}/propose",
            json={"action": action},
            headers=bearer(self.world.agent_token),
        )
        assert r.status_code == 201, r.text
        assert r.json()["decision"] == "ALLOW", r.text
        return r.json()["action_id"]

    def relayer_transactions(self) -> int:
        return int(rpc(self.chain, "eth_getTransactionCount", self.relayer.address, "latest")["result"], 16)


async def onchain_world(client, chain: ContractChain, signers: list[str] | None = None) -> Onchain:
    world = await make_world(
        client, policy=EVM_POLICY, chain_id=chain.chain_id, verifying_contract=VERIFYING_CONTRACT
    )
    return Onchain(chain, client, world, signers)


async def test_an_allowed_evm_call_moves_funds_once_with_its_transaction_in_the_proof(client, contract_chain):
    onchain = await onchain_world(client, contract_chain)
    await onchain.configure()
    action_id = await onchain.propose(4321)
    before = balance(contract_chain, RECIPIENT)
    r = await execute(client, onchain.world, action_id)
    assert r.status_code == 202, r.text
    execution_id = r.json()["execution_id"]
    done = await wait_for(client, onchain.world, execution_id)
    assert done["status"] == "succeeded", done
    assert balance(contract_chain, RECIPIENT) == before + 4321
    tx_hash = done["reference"]
    receipt = rpc(contract_chain, "eth_getTransactionReceipt", tx_hash)["result"]
    assert receipt["status"] == "0x1" and receipt["to"].lower() == onchain.account.lower()
    assert done["result"]["transaction_hash"] == tx_hash
    assert done["result"]["block_number"] == int(receipt["blockNumber"], 16)
    assert onchain.relayer_transactions() == 1
    log = await verified_log(client, onchain.world)
    assert entries_of(log, execution_id) == [
        "execution.requested",
        "execution.submitted",
        "execution.succeeded",
    ]
    succeeded = next(e for e in log if e.type == "execution.succeeded")
    assert succeeded.data["reference"] == tx_hash and succeeded.data["result"]["transaction_hash"] == tx_hash
    # the proof bundle verifies offline, execution entries included
    bundle = (
        await client.get(f"/v1/actions/{action_id}/proof", headers=bearer(onchain.world.auditor))
    ).json()
    keys = (
        await client.get(f"/v1/tenants/{onchain.world.tenant}/keys", headers=bearer(onchain.world.auditor))
    ).json()
    verified = verify_bundle(bundle, keys["log"]["vkey"])
    assert [e.type for e in verified.entries][-3:] == [
        "execution.requested", "execution.submitted", "execution.succeeded"
    ]  # fmt: skip
    assert verified.entries[-1].data["result"]["transaction_hash"] == tx_hash
    # a second execution is refused by the gateway; the verdict replayed on chain by the contract
    r = await execute(client, onchain.world, action_id)
    assert r.status_code == 409 and r.json()["code"] == "already_executed"
    transaction = rpc(contract_chain, "eth_getTransactionByHash", tx_hash)["result"]
    replay = rpc(contract_chain, "eth_call", {"to": onchain.account, "data": transaction["input"]}, "latest")
    assert replay["error"]["data"].startswith("0x")  # VerdictReplayed (decoded in the contract tests)


async def test_the_accounts_refusal_is_the_failure_code_and_nothing_is_sent(client, contract_chain):
    stranger = Account.from_key("0x" + "33" * 32).address  # the account trusts another signer
    onchain = await onchain_world(client, contract_chain, signers=[stranger])
    await onchain.configure()
    action_id = await onchain.propose(100)
    execution_id = (await execute(client, onchain.world, action_id)).json()["execution_id"]
    done = await wait_for(client, onchain.world, execution_id)
    assert done["status"] == "failed" and done["code"] == "unauthorised_signer", done
    assert onchain.relayer_transactions() == 0


async def test_an_action_for_another_account_is_refused_before_execution(client, contract_chain):
    onchain = await onchain_world(client, contract_chain)
    await onchain.configure()
    action_id = await onchain.propose(100, account="0x" + "12" * 20)
    r = await execute(client, onchain.world, action_id)
    assert r.status_code == 422 and r.json()["code"] == "payment_unmappable", r.text


class LosingProxy:
    """Forwards JSON-RPC to the chain; forwards the first eth_sendRawTransaction but answers 502
    (the transaction is in, the answer is lost). Counts the raw transactions it forwarded."""

    def __init__(self, target: str) -> None:
        self.sent = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer = httpx.post(target, content=body, headers={"Content-Type": "application/json"})
                status = 200
                if json.loads(body).get("method") == "eth_sendRawTransaction":
                    proxy.sent += 1
                    status = 502 if proxy.sent == 1 else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


async def test_a_lost_answer_is_found_on_chain_and_never_sent_twice(client, contract_chain):
    onchain = await onchain_world(client, contract_chain)
    proxy = LosingProxy(contract_chain.rpc_url)
    try:
        await onchain.configure(rpc_url=proxy.url)
        action_id = await onchain.propose(777)
        before = balance(contract_chain, RECIPIENT)
        execution_id = (await execute(client, onchain.world, action_id)).json()["execution_id"]
        done = await wait_for(client, onchain.world, execution_id)
    finally:
        proxy.stop()
    assert done["status"] == "succeeded", done
    assert done["attempts"] >= 2  # the first attempt's answer was lost; the second asked the chain
    assert proxy.sent == 1 and onchain.relayer_transactions() == 1
    assert balance(contract_chain, RECIPIENT) == before + 777


async def test_an_unreachable_rpc_keeps_the_execution_pending_then_it_completes(client, contract_chain):
    from tests.chain import unused_rpc_url

    onchain = await onchain_world(client, contract_chain)
    await onchain.configure(rpc_url=unused_rpc_url())
    action_id = await onchain.propose(55)
    execution_id = (await execute(client, onchain.world, action_id)).json()["execution_id"]
    while True:  # wait until an attempt has failed to reach the node
        view = (
            await client.get(f"/v1/executions/{execution_id}", headers=bearer(onchain.world.agent_token))
        ).json()
        if view["attempts"] >= 2:
            break
        await asyncio.sleep(0.05)
    assert view["status"] == "pending" and "rail_unavailable" in (view["message"] or ""), view
    await onchain.configure()  # the node is back (the rail now points at it)
    done = await wait_for(client, onchain.world, execution_id)
    assert done["status"] == "succeeded", done
    assert onchain.relayer_transactions() == 1
