"""Gas the VerdictAccount's verification adds to a call, for several sizes of call data.

    python bench/onchain_gas.py

On the in-process py-evm chain (gateway/devchain.py, Prague rules): for each data size, the gas
of `execute(to, 0, data, verdict, signature)` through a VerdictAccount and, as the baseline in the
same run, of the same call sent directly from an externally owned account. Gas is deterministic:
the machine's load does not change these figures.
"""

from __future__ import annotations

import platform
import sys
from typing import Any

import httpx
from eth_account import Account
from eth_utils import to_checksum_address

from crypto.eip712 import Domain, VerdictMessage, hash_verdict
from crypto.evm_call import evm_call
from gateway.devchain import VERDICT_ACCOUNT_ARTIFACT, DevChain
from gateway.rails.verdict_account import encode_execute

SIGNER = Account.from_key("0x" + "11" * 32)
DOMAIN_CONTRACT = to_checksum_address("0x" + "ab" * 20)
TARGET = to_checksum_address("0x" + "9a" * 20)
SIZES = (0, 36, 68, 104, 260, 1028)


def rpc(chain: DevChain, method: str, *params: Any) -> Any:
    answer = httpx.post(
        chain.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    )
    return answer.json()["result"]


def gas_of(chain: DevChain, sender: str, to: str, data: bytes) -> int:
    tx = rpc(
        chain,
        "eth_sendTransaction",
        {"from": sender, "to": to, "data": "0x" + data.hex(), "gas": hex(3_000_000)},
    )
    receipt = rpc(chain, "eth_getTransactionReceipt", tx)
    assert receipt["status"] == "0x1", receipt
    return int(receipt["gasUsed"], 16)


def main() -> int:
    with DevChain() as chain:
        sender = chain.funded_account
        account = chain.deploy(
            VERDICT_ACCOUNT_ARTIFACT, sender, chain.chain_id, DOMAIN_CONTRACT, [SIGNER.address]
        )
        now = int(rpc(chain, "eth_getBlockByNumber", "latest", False)["timestamp"], 16)
        print(f"py-evm (eth-tester) chain {chain.chain_id}; Python {platform.python_version()}")
        print(f"{'data bytes':>10} {'execute':>9} {'direct':>8} {'added':>8}")
        for size in SIZES:
            data = (bytes.fromhex("a9059cbb") + bytes(range(256)) * 5)[:size]
            call = evm_call(account, chain.chain_id, TARGET, 0, data)
            message = VerdictMessage(f"act_bench_{size}", call.action_hash(), "acme", "ap-bot", "evm_call", 1, 1,
                                     b"\x00" * 32, now, now + 3600)  # fmt: skip
            signed = Account.unsafe_sign_hash(
                hash_verdict(Domain(chain.chain_id, DOMAIN_CONTRACT), message), SIGNER.key
            )
            signature = signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([signed.v])
            through = gas_of(chain, sender, account, encode_execute(call, message, signature))
            direct = gas_of(chain, sender, TARGET, data)
            print(f"{size:>10} {through:>9,} {direct:>8,} {through - direct:>8,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
