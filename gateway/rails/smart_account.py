"""The `smart_account` rail: executes an `evm_call` through a VerdictAccount with its verdict.

    {"kind": "smart_account", "config": {
        "rpc_url": "https://rpc.example", "chain_id": 8453,
        "account": "0x…",                  # the VerdictAccount (EIP-55 or lowercase)
        "relayer_key": "0x…",              # write-only: the key that pays gas, nothing else
        "confirmations": 1,                # blocks on top of the one holding the call, inclusive
        "start_block": 0,                  # where to look for the account's `Executed` events
        "gas_limit": 600000, "timeout_seconds": 10, "receipt_timeout_seconds": 30}}

The relayer holds no authority: the account checks the verdict itself (`contracts/
VerdictAccount.sol`), so a stolen relayer key can only spend gas, and the agent never holds a key.

Exactly once: the verdict's action id is the idempotency key on chain — the account refuses a
second use (`VerdictReplayed`) whoever sends it. `status` asks the chain, never our memory: an
`Executed` event for the action id (succeeded, with its transaction hash and block); none, but
the latest block is already past the verdict's expiry (failed: no block can ever accept it); none,
but the relayer has transactions in the mempool (processing: wait, do not send another); else
absent. `submit` simulates first (`eth_call`): a refusal is `failed` with the contract's error
name and no gas spent. An unreachable or erring RPC is `RailUnavailable` (unknown: ask first).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, ClassVar

import httpx
from eth_utils import to_checksum_address

from crypto.eip712 import parse_verdict_typed_data
from crypto.errors import CryptoError
from crypto.ethaccount import Account
from crypto.evm_call import EvmCall, EvmCallError, parse_evm_call
from gateway.rails.base import (
    ABSENT,
    FAILED,
    PROCESSING,
    SUCCEEDED,
    Payment,
    RailConfigError,
    RailKind,
    RailOutcome,
    RailRefused,
    RailUnavailable,
)
from gateway.rails.jsonrpc import JsonRpc, RpcError
from gateway.rails.outbound import check_url
from gateway.rails.verdict_account import EXECUTED_TOPIC, action_id_topic, decode_revert, encode_execute

KIND = "smart_account"
CONFIG_KEYS = {"rpc_url", "chain_id", "account", "relayer_key", "confirmations", "start_block", "gas_limit",
               "timeout_seconds", "receipt_timeout_seconds"}  # fmt: skip
_KEY = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
RECEIPT_POLL_SECONDS = 0.2
_INTEGERS = {  # name: (default, low, high)
    "confirmations": (1, 1, 1000),
    "start_block": (0, 0, 2**63),
    "gas_limit": (600_000, 100_000, 30_000_000),
}
_SECONDS = {"timeout_seconds": (10.0, 60.0), "receipt_timeout_seconds": (30.0, 50.0)}


def check_config(config: object) -> dict[str, Any]:
    """The configuration with defaults filled in. Raises RailConfigError naming the bad member."""
    if not isinstance(config, dict):
        raise RailConfigError("config must be an object", field="config")
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise RailConfigError(f"unknown members: {', '.join(sorted(unknown))}", field="config")
    out: dict[str, Any] = {"rpc_url": check_url(config.get("rpc_url"), "config.rpc_url")}
    chain_id = config.get("chain_id")
    if type(chain_id) is not int or not 0 < chain_id <= 2**53 - 1:
        raise RailConfigError("chain_id must be a positive EIP-155 chain id", field="config.chain_id")
    out["chain_id"] = chain_id
    account = config.get("account")
    if not isinstance(account, str) or not _ADDRESS.fullmatch(account):
        raise RailConfigError("account must be a 0x address", field="config.account")
    out["account"] = to_checksum_address(account)
    key = config.get("relayer_key")
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise RailConfigError("relayer_key must be 0x and 64 hex digits", field="config.relayer_key")
    out["relayer_key"] = key
    for name, (default, low, high) in _INTEGERS.items():
        value = config.get(name, default)
        if type(value) is not int or not low <= value <= high:
            raise RailConfigError(f"{name} must be an integer in [{low}, {high}]", field=f"config.{name}")
        out[name] = value
    for name, (default, high) in _SECONDS.items():
        value = config.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= high:
            raise RailConfigError(f"{name} must be in (0, {high:g}]", field=f"config.{name}")
        out[name] = float(value)
    return out


class SmartAccountRail:
    """A configured `smart_account` rail. Safe for concurrent use (one HTTP pool; the relayer's
    nonce is read from the chain under a lock, so two submissions never share one)."""

    kind: ClassVar[str] = KIND
    reversible = False  # a transfer on chain has no reversal; send another action instead

    def __init__(self, config: dict[str, Any], secrets: dict[str, str]) -> None:
        self.config = config
        self.url = config["rpc_url"]
        self.account = config["account"]
        self._relayer = Account.from_key(secrets["relayer_key"])
        self._http = httpx.AsyncClient(timeout=config["timeout_seconds"], follow_redirects=False)
        self._rpc = JsonRpc(self.url, self._http)
        self._send_lock = asyncio.Lock()

    # ---- what the verdict and the action say

    def _prepare(self, payment: Payment) -> tuple[EvmCall, Any, bytes]:
        """The call, its verdict message and signature. Raises RailRefused (`payment_unmappable`)."""
        try:
            call = parse_evm_call(payment.action)
        except EvmCallError as exc:
            raise RailRefused(str(exc), code="payment_unmappable") from None
        if call.account != self.account.lower():
            raise RailRefused(
                f"the action's account is not this rail's ({self.account})", code="payment_unmappable"
            )
        if call.chain_id != self.config["chain_id"]:
            raise RailRefused(f"the action is for chain {call.chain_id}, this rail's is {self.config['chain_id']}",
                              code="payment_unmappable")  # fmt: skip
        verdict = payment.verdict or {}
        try:
            _, message = parse_verdict_typed_data(verdict.get("typed_data"))
            signature = bytes.fromhex(str(verdict.get("signature", ""))[2:])
        except (CryptoError, ValueError):
            raise RailRefused(
                "the action has no readable signed verdict", code="payment_unmappable"
            ) from None
        if message.action_id != payment.action_id or len(signature) != 65:
            raise RailRefused("the signed verdict is not this action's", code="payment_unmappable")
        return call, message, signature

    def check(self, payment: Payment) -> None:
        """Raises RailRefused (`payment_unmappable`) when the action is not an evm_call for this account."""
        self._prepare(payment)

    # ---- JSON-RPC

    async def _read(self, method: str, *params: Any) -> Any:
        return await self._rpc.read(method, *params)

    async def _simulate(self, calldata: str) -> tuple[str, list[Any]] | None:
        """None when `execute` would succeed now; else the contract's error (name, arguments)."""
        call = {"from": self._relayer.address, "to": self.account, "data": calldata}
        try:
            await self._rpc.call("eth_call", call, "latest")
        except RpcError as exc:
            data = exc.data if isinstance(exc.data, str) else None
            if data is None and "revert" not in exc.message.lower():
                raise RailUnavailable(f"eth_call: RPC error {exc.code}: {exc.message}") from None
            try:
                return decode_revert(bytes.fromhex(data[2:])) if data else ("execution_reverted", [])
            except ValueError:
                return "execution_reverted", []
        return None

    # ---- the rail calls

    async def submit(self, payment: Payment) -> RailOutcome:
        call, message, signature = self._prepare(payment)
        calldata = "0x" + encode_execute(call, message, signature).hex()
        refused = await self._simulate(calldata)
        if refused is not None:
            return _refusal(refused)
        async with self._send_lock:
            nonce = int(await self._read("eth_getTransactionCount", self._relayer.address, "pending"), 16)
            gas_price = int(await self._read("eth_gasPrice"), 16)
            transaction = {
                "to": self.account, "value": 0, "data": calldata, "nonce": nonce, "gas": self.config["gas_limit"],
                "gasPrice": gas_price, "chainId": self.config["chain_id"],
            }  # fmt: skip
            signed = self._relayer.sign_transaction(transaction)
            tx_hash = "0x" + bytes(signed.hash).hex()
            try:
                await self._rpc.call("eth_sendRawTransaction", "0x" + bytes(signed.raw_transaction).hex())
            except RpcError as exc:  # the node may hold it anyway ("already known"): ask, do not resend
                raise RailUnavailable(f"eth_sendRawTransaction: {exc.message}") from None
        receipt = await self._wait_for_receipt(tx_hash)
        if receipt is None:
            return RailOutcome(PROCESSING, tx_hash, details={"transaction_hash": tx_hash})
        if int(receipt["status"], 16) != 1:  # mined but reverted (e.g. someone used the verdict first)
            refused = await self._simulate(calldata)
            name, _ = refused or ("execution_reverted", [])
            return RailOutcome(FAILED, tx_hash, _code(name), f"the account reverted: {name}",
                               {"transaction_hash": tx_hash, "block_number": int(receipt["blockNumber"], 16)})  # fmt: skip
        return await self._confirmed(tx_hash, int(receipt["blockNumber"], 16), receipt.get("gasUsed"))

    async def _wait_for_receipt(self, tx_hash: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + self.config["receipt_timeout_seconds"]
        while True:
            receipt = await self._read("eth_getTransactionReceipt", tx_hash)
            if isinstance(receipt, dict) and receipt.get("blockNumber"):
                return receipt
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(RECEIPT_POLL_SECONDS)

    async def _confirmed(self, tx_hash: str, block: int, gas_used: str | None) -> RailOutcome:
        details: dict[str, Any] = {
            "transaction_hash": tx_hash, "block_number": block, "chain_id": self.config["chain_id"],
            "account": self.account,
        }  # fmt: skip
        if gas_used:
            details["gas_used"] = int(gas_used, 16)
        head = int(await self._read("eth_blockNumber"), 16)
        state = SUCCEEDED if head - block + 1 >= self.config["confirmations"] else PROCESSING
        return RailOutcome(state, tx_hash, details=details)

    async def status(self, payment: Payment) -> RailOutcome:
        """What the chain says about the action: see the module docstring."""
        logs = await self._read("eth_getLogs", {
            "address": self.account, "topics": [EXECUTED_TOPIC, action_id_topic(payment.action_id)],
            "fromBlock": hex(self.config["start_block"]), "toBlock": "latest",
        })  # fmt: skip
        if isinstance(logs, list) and logs:
            found = logs[0]
            receipt = await self._read("eth_getTransactionReceipt", found["transactionHash"])
            gas_used = receipt.get("gasUsed") if isinstance(receipt, dict) else None
            return await self._confirmed(found["transactionHash"], int(found["blockNumber"], 16), gas_used)
        latest = await self._read("eth_getBlockByNumber", "latest", False)
        expires_at = _expires_at(payment)
        if expires_at is not None and int(latest["timestamp"], 16) > expires_at:
            return RailOutcome(FAILED, None, "verdict_expired",
                               "the verdict expired on chain before any transaction carried it")  # fmt: skip
        pending = await self._read("eth_getTransactionCount", self._relayer.address, "pending")
        mined = await self._read("eth_getTransactionCount", self._relayer.address, "latest")
        if int(pending, 16) > int(mined, 16):
            return RailOutcome(PROCESSING)  # the relayer has transactions in flight: wait for them
        return RailOutcome(ABSENT)

    async def reverse(self, payment: Payment, reference: str, reason: str) -> RailOutcome:
        raise RailRefused("an on-chain call cannot be reversed", code="not_reversible")

    async def close(self) -> None:
        await self._http.aclose()


def _expires_at(payment: Payment) -> int | None:
    try:
        return parse_verdict_typed_data((payment.verdict or {}).get("typed_data"))[1].expires_at
    except CryptoError:
        return None


def _code(error_name: str) -> str:
    """A contract error name as a stable snake_case code (VerdictReplayed → verdict_replayed)."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", error_name).lower()


def _refusal(error: tuple[str, list[Any]]) -> RailOutcome:
    name, arguments = error
    shown = ", ".join(str(a) for a in arguments)[:300]
    return RailOutcome(FAILED, None, _code(name), f"the account refuses: {name}({shown})", {"error": name})


SMART_ACCOUNT = RailKind(KIND, ("relayer_key",), check_config, SmartAccountRail)
