"""Helpers for the VerdictAccount tests: raw JSON-RPC, a signer, verdicts signed for a call."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from eth_account import Account
from eth_utils import to_checksum_address

from crypto.eip712 import Domain, VerdictMessage, hash_verdict
from crypto.evm_call import EvmCall, evm_call
from gateway.rails.verdict_account import decode_revert, encode_execute
from tests.chain import VERDICT_ACCOUNT_ARTIFACT, ContractChain

SIGNER = Account.from_key("0x" + "11" * 32)
OTHER_SIGNER = Account.from_key("0x" + "22" * 32)
VERIFYING_CONTRACT = to_checksum_address("0x" + "ab" * 20)
ACCOUNT_ABI = json.loads(VERDICT_ACCOUNT_ARTIFACT.read_text(encoding="utf-8"))["abi"]
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def rpc(chain: ContractChain, method: str, *params: Any) -> dict[str, Any]:
    """One JSON-RPC request; the whole answer (`result` or `error`)."""
    answer = httpx.post(
        chain.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    )
    answer.raise_for_status()
    return answer.json()


def latest_timestamp(chain: ContractChain) -> int:
    return int(rpc(chain, "eth_getBlockByNumber", "latest", False)["result"]["timestamp"], 16)


@dataclass
class Setup:
    chain: ContractChain
    account: str  # EIP-55
    owner: str  # an unlocked eth-tester account
    relayer: str  # another one

    def call(self, to: str, value: int = 0, data: bytes = b"", chain_id: int | None = None) -> EvmCall:
        return evm_call(self.account, chain_id or self.chain.chain_id, to, value, data)


def verdict_for(
    call: EvmCall,
    expires_at: int,
    *,
    action_id: str = "act_1",
    decision: int = 1,
    signer: Any = SIGNER,
    chain_id: int | None = None,
    verifying_contract: str = VERIFYING_CONTRACT,
    action_hash: bytes | None = None,
) -> tuple[VerdictMessage, bytes]:
    """A Verdict for `call` and its 65-byte signature (r ‖ s ‖ v)."""
    message = VerdictMessage(
        action_id=action_id,
        action_hash=action_hash or call.action_hash(),
        tenant="acme",
        agent="ap-bot",
        action_type="evm_call",
        decision=decision,
        policy_version=3,
        policy_hash=b"\x07" * 32,
        issued_at=expires_at - 60,
        expires_at=expires_at,
    )
    domain = Domain(chain_id or call.chain_id, verifying_contract)
    signed = Account.unsafe_sign_hash(hash_verdict(domain, message), signer.key)
    signature = signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([signed.v])
    return message, signature


def high_s_twin(signature: bytes) -> bytes:
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])


def execute_data(call: EvmCall, message: VerdictMessage, signature: bytes) -> str:
    return "0x" + encode_execute(call, message, signature).hex()


def simulate(setup: Setup, data: str) -> tuple[str, list[Any]] | None:
    """eth_call of `execute` from the relayer: None when it would succeed, else the error."""
    answer = rpc(
        setup.chain, "eth_call", {"from": setup.relayer, "to": setup.account, "data": data}, "latest"
    )
    if "error" not in answer:
        return None
    revert = answer["error"].get("data")
    assert isinstance(revert, str), answer
    return decode_revert(bytes.fromhex(revert[2:]))


def send(
    setup: Setup, data: str, sender: str | None = None, to: str | None = None, value: int = 0
) -> dict[str, Any]:
    """Send a transaction (eth-tester signs for its accounts) and return its receipt."""
    answer = rpc(
        setup.chain,
        "eth_sendTransaction",
        {
            "from": sender or setup.relayer,
            "to": to or setup.account,
            "data": data,
            "gas": hex(2_000_000),
            "value": hex(value),
        },
    )
    assert "result" in answer, answer
    receipt = rpc(setup.chain, "eth_getTransactionReceipt", answer["result"])["result"]
    assert receipt is not None
    return receipt


def balance(chain: ContractChain, address: str) -> int:
    return int(rpc(chain, "eth_getBalance", address, "latest")["result"], 16)
