"""On-chain enforcement, end to end, on an in-process chain: nothing here is mocked.

    pip install -e '.[chain]'          # eth-tester and py-evm (the dev extra has them too)
    python examples/onchain_demo.py

1. starts a py-evm chain (gateway/devchain.py) and a real gateway (`verdict serve`, SQLite in a
   temporary directory);
2. creates a tenant whose EIP-712 domain is that chain, a policy for `evm_call` actions, an agent;
3. deploys a test token (contracts/TestToken.sol) and a VerdictAccount
   (contracts/VerdictAccount.sol) that trusts the gateway's verdict signer, and funds the account;
4. configures the tenant's `smart_account` rail (a relayer key that only pays gas);
5. the agent proposes a token transfer to an allow-listed payee: ALLOW; executes it; the
   balance moves; the execution carries the transaction hash;
6. replays the same verdict straight to the chain: the account reverts with VerdictReplayed;
7. a transfer above the limit is ESCALATE, one to an unknown address DENY.

Prints each step; exits 0 when everything behaved as described, 1 otherwise.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_utils import to_checksum_address

from crypto.evm_call import evm_call
from gateway.client import VerdictClient
from gateway.devchain import TEST_TOKEN_ARTIFACT, VERDICT_ACCOUNT_ARTIFACT, DevChain
from gateway.rails.verdict_account import decode_revert

TENANT, AGENT = "treasury", "payments-bot"
DOMAIN_CONTRACT = "0x00000000000000000000000000000000000aB1E5"
PAYEES = ["0x" + "a1" * 20, "0x" + "b2" * 20]
UNKNOWN_PAYEE = "0x" + "c3" * 20
DECIMALS = 6  # the token's: 1 TUSD = 10**6 base units
TRANSFER = "a9059cbb"  # transfer(address,uint256)


def policy(token: str) -> str:
    """Token transfers to allow-listed payees: ALLOW up to 4,294.967295 TUSD (2**32 - 1 base units:
    the amount's first 56 hex digits are zero), ESCALATE above; everything else DENY. (The most
    severe matching rule wins, so the ESCALATE rule excludes what the ALLOW rule allows.)"""
    payees = "|".join(p[2:] for p in PAYEES)
    to_payee = f"^0x{TRANSFER}0{{24}}({payees})"
    return f"""\
schema: verdict.policy/v1
default: DENY
verdict_ttl_seconds: 120
rules:
  - id: small-transfers-to-payees
    decision: ALLOW
    match: {{action.type: {{eq: evm_call}}, action.to: {{eq: "{token}"}}, action.value: {{eq: "0"}}}}
    when: 'action.data.matches("{to_payee}0{{56}}[0-9a-f]{{8}}$")'
  - id: large-transfers-to-payees
    decision: ESCALATE
    reason: above_transfer_limit
    match: {{action.type: {{eq: evm_call}}, action.to: {{eq: "{token}"}}, action.value: {{eq: "0"}}}}
    when: 'action.data.matches("{to_payee}[0-9a-f]{{64}}$") && !action.data.matches("{to_payee}0{{56}}[0-9a-f]{{8}}$")'
    approvals: {{threshold: 1, roles: [cfo]}}
"""


def word(value: int | str) -> str:
    return (value[2:].lower() if isinstance(value, str) else f"{value:x}").rjust(64, "0")


def rpc(chain: DevChain, method: str, *params: Any) -> dict[str, Any]:
    return httpx.post(
        chain.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    ).json()


def send(chain: DevChain, to: str, data: str = "0x", value: int = 0) -> dict[str, Any]:
    sender = chain.funded_account
    tx = rpc(
        chain,
        "eth_sendTransaction",
        {"from": sender, "to": to, "data": data, "value": hex(value), "gas": hex(500_000)},
    )
    return rpc(chain, "eth_getTransactionReceipt", tx["result"])["result"]


def token_balance(chain: DevChain, token: str, holder: str) -> str:
    raw = int(
        rpc(chain, "eth_call", {"to": token, "data": "0x70a08231" + word(holder)}, "latest")["result"], 16
    )
    return f"{raw // 10**DECIMALS}.{raw % 10**DECIMALS:06d}"


class Gateway:
    """`verdict serve` in a subprocess on a free port, data in a temporary directory."""

    def __init__(self, data_dir: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "VERDICT_DATA_DIR": str(data_dir),
            "VERDICT_PORT": str(port),
            "VERDICT_HOST": "127.0.0.1",
            "VERDICT_RAIL_ALLOW_PRIVATE": "1",
        }  # the chain is on loopback
        self.log = (data_dir / "gateway.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the gateway did not start; see {data_dir / 'gateway.log'}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        self.admin = (data_dir / "admin.token").read_text().split()[0]

    def call(
        self, method: str, path: str, token: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}", **(headers or {})}
        answer = httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)
        if answer.status_code >= 400:
            raise SystemExit(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json() if answer.content else None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def main() -> int:
    with DevChain() as chain, tempfile.TemporaryDirectory(prefix="verdict-onchain-") as tmp:
        gateway = Gateway(Path(tmp))
        try:
            return walk(chain, gateway)
        finally:
            gateway.stop()


def walk(chain: DevChain, gateway: Gateway) -> int:
    print(f"chain {chain.chain_id} at {chain.rpc_url}; gateway at {gateway.url}")
    # (1) the token and the tenant's domain on this chain
    token = chain.deploy(TEST_TOKEN_ARTIFACT, "Test USD", "TUSD", DECIMALS)
    gateway.call("POST", "/v1/tenants", gateway.admin, json={
        "id": TENANT, "name": "Treasury", "chain_id": chain.chain_id, "verifying_contract": DOMAIN_CONTRACT})  # fmt: skip
    admin = gateway.call(
        "POST", f"/v1/tenants/{TENANT}/api-keys", gateway.admin, json={"role": "tenant_admin"}
    )["token"]
    gateway.call("POST", f"/v1/tenants/{TENANT}/policies", admin, content=policy(token.lower()).encode(),
                 headers={"Content-Type": "application/yaml"})  # fmt: skip
    agent_token = gateway.call(
        "POST", f"/v1/tenants/{TENANT}/agents", admin, json={"id": AGENT, "name": "Payments bot"}
    )["token"]
    keys = gateway.call("GET", f"/v1/tenants/{TENANT}/keys", admin)
    signer = next(k["address"] for k in keys["verdict_signers"] if k["status"] == "active")
    # (2) the account: owned by the treasury's owner key, trusting the gateway's verdict signer
    account = chain.deploy(
        VERDICT_ACCOUNT_ARTIFACT, chain.funded_account, chain.chain_id, DOMAIN_CONTRACT, [signer]
    )
    send(chain, token, "0x40c10f19" + word(account) + word(10_000 * 10**DECIMALS))  # mint 10,000 TUSD
    print(
        f"VerdictAccount {account} holds {token_balance(chain, token, account)} TUSD; trusts signer {signer}"
    )
    # (3) the rail: a relayer that pays gas and has no authority
    relayer = Account.from_key("0x" + secrets.token_hex(32))
    send(chain, relayer.address, value=10**18)
    gateway.call("PUT", f"/v1/tenants/{TENANT}/rails/smart_account", admin, json={"kind": "smart_account", "config": {
        "rpc_url": chain.rpc_url, "chain_id": chain.chain_id, "account": account,
        "relayer_key": "0x" + bytes(relayer.key).hex()}})  # fmt: skip
    with VerdictClient(gateway.url, agent_token) as agent:
        return act(chain, account, token, agent)


def act(chain: DevChain, account: str, token: str, agent: VerdictClient) -> int:

    def transfer(to: str, amount: int) -> dict[str, Any]:
        data = bytes.fromhex(TRANSFER + word(to) + word(amount))
        return agent.propose(AGENT, evm_call(account, chain.chain_id, token, 0, data).action())

    # (4) ALLOW, execute, the balance moves
    payee = to_checksum_address(PAYEES[0])
    proposed = transfer(payee, 250 * 10**DECIMALS)
    print(f"propose transfer of 250 TUSD to {payee}: {proposed['decision']}")
    execution = agent.execute(proposed["action_id"])
    done = agent.wait_for_execution(execution["execution_id"], timeout=60)
    print(
        f"execute: {done['status']} in transaction {done['reference']} (block {done['result']['block_number']})"
    )
    print(
        f"payee now holds {token_balance(chain, token, payee)} TUSD; account {token_balance(chain, token, account)}"
    )
    # (5) the same verdict, sent straight to the chain by anyone: refused
    transaction = rpc(chain, "eth_getTransactionByHash", done["reference"])["result"]
    replay = rpc(
        chain,
        "eth_call",
        {"from": chain.funded_account, "to": account, "data": transaction["input"]},
        "latest",
    )
    error = decode_revert(bytes.fromhex(replay["error"]["data"][2:]))[0] if "error" in replay else "none"
    print(f"replay the same verdict on chain: reverts with {error}")
    # (6) what the policy does not allow
    large = transfer(payee, 5_000 * 10**DECIMALS)["decision"]
    unknown = transfer(UNKNOWN_PAYEE, 10 * 10**DECIMALS)["decision"]
    print(f"propose 5,000 TUSD to the same payee: {large}; 10 TUSD to an unknown address: {unknown}")
    ok = (proposed["decision"] == "ALLOW" and done["status"] == "succeeded" and error == "VerdictReplayed"
          and token_balance(chain, token, payee) == "250.000000" and large == "ESCALATE" and unknown == "DENY")  # fmt: skip
    print("OK" if ok else "UNEXPECTED: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
