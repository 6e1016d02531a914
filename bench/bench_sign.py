"""Benchmark verdict signing and canonical JSON against their reference implementations.

    python bench/bench_sign.py

Baselines run in the same process: eth_account.Account.sign_typed_data for signing,
rfc8785.dumps for canonicalization. Reports the best of several repeats, in µs per
operation and operations per second.
"""

from __future__ import annotations

import os
import platform
import sys
import timeit
from collections.abc import Callable
from importlib.metadata import version

import rfc8785
from eth_account import Account
from eth_account.messages import encode_typed_data

from crypto import (
    DECISION_ALLOW,
    Domain,
    LocalSigner,
    VerdictMessage,
    action_hash,
    canonicalize,
    hash_verdict,
    keccak256,
    sign_verdict,
    verdict_typed_data,
    verify_verdict_signature,
)

PRIVATE_KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
DOMAIN = Domain(chain_id=8453, verifying_contract="0x5FbDB2315678afecb367f032d93F642f64180aa3")
ACTION = {
    "tool": "http.post",
    "url": "https://api.example.com/v1/payments",
    "method": "POST",
    "amount": 125_000,
    "currency": "USD",
    "recipient": "acct_9f3b2c",
    "memo": "Invoice #42 — Zürich office",
    "idempotency_key": "01JAB7Q9W3N4XK2V5R8T6Y1M0P",
    "headers": {"content-type": "application/json", "x-request-id": "req_7d1e"},
    "dry_run": False,
}
VERDICT = VerdictMessage(
    action_id="01JAB7Q9W3N4XK2V5R8T6Y1M0P",
    action_hash=action_hash(ACTION),
    tenant="acme",
    agent="procurement-bot",
    action_type="http.post",
    decision=DECISION_ALLOW,
    policy_version=17,
    policy_hash=bytes.fromhex("4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15"),
    issued_at=1_731_000_000,
    expires_at=1_731_000_300,
)
AUDIT_ENTRY = {
    "format": "verdict.audit/v1",
    "seq": 184_467,
    "recorded_at": "2024-11-07T17:20:00.123456Z",
    "tenant": "acme",
    "agent": "procurement-bot",
    "action_id": VERDICT.action_id,
    "action_type": "http.post",
    "action_hash": "0x" + VERDICT.action_hash.hex(),
    "action": ACTION,
    "decision": "allow",
    "reasons": [{"rule": "payments.under_limit", "detail": "amount 125000 <= 500000"}],
    "policy": {"version": 17, "hash": "0x" + VERDICT.policy_hash.hex()},
    "verdict": {
        "signature": "0x" + "ab" * 65,
        "signer": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "expires_at": 1_731_000_300,
    },
    "previous_hash": "0x" + "cd" * 32,
}


def measure(operation: Callable[[], object]) -> float:
    """Return the best time per call, in microseconds, over five repeats of ~0.2 s each."""
    timer = timeit.Timer(operation)
    calls, _ = timer.autorange()
    return min(timer.repeat(repeat=5, number=calls)) / calls * 1e6


def eth_account_digest(typed_data: dict) -> bytes:
    signable = encode_typed_data(full_message=typed_data)
    return keccak256(b"\x19" + signable.version + signable.header + signable.body)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    signer = LocalSigner(PRIVATE_KEY)
    signed = sign_verdict(signer, DOMAIN, VERDICT)
    reference = Account.sign_typed_data(PRIVATE_KEY, full_message=verdict_typed_data(DOMAIN, VERDICT))
    assert signed.signature == "0x" + bytes(reference.signature).hex(), "signatures differ"
    assert signed.digest == eth_account_digest(signed.typed_data), "digests differ"
    assert canonicalize(ACTION) == rfc8785.dumps(ACTION) and canonicalize(AUDIT_ENTRY) == rfc8785.dumps(
        AUDIT_ENTRY
    )

    print(f"cpu:      {cpu_model()}")
    print(f"nproc:    {os.cpu_count()}")
    print(f"python:   {platform.python_implementation()} {sys.version.split()[0]} on {platform.platform()}")
    packages = ("eth-account", "eth-hash", "coincurve", "rfc8785", "msgspec")
    print("packages: " + ", ".join(f"{name} {version(name)}" for name in packages))
    action_size, audit_size = len(rfc8785.dumps(ACTION)), len(rfc8785.dumps(AUDIT_ENTRY))
    print(f"inputs:   action {action_size} B / {len(ACTION)} keys, audit entry {audit_size} B")
    print()

    typed_data, signature = signed.typed_data, signed.signature
    groups: list[tuple[str, tuple[str, Callable[[], object]], list[tuple[str, Callable[[], object]]]]] = [
        (
            "sign Verdict",
            (
                "eth_account Account.sign_typed_data",
                lambda: Account.sign_typed_data(PRIVATE_KEY, full_message=typed_data),
            ),
            [("crypto.sign_verdict", lambda: sign_verdict(signer, DOMAIN, VERDICT))],
        ),
        (
            "digest Verdict",
            ("eth_account encode_typed_data+keccak", lambda: eth_account_digest(typed_data)),
            [("crypto.hash_verdict", lambda: hash_verdict(DOMAIN, VERDICT))],
        ),
        (
            "verify Verdict",
            (
                "eth_account Account.recover_message",
                lambda: Account.recover_message(
                    encode_typed_data(full_message=typed_data), signature=signature
                ),
            ),
            [
                (
                    "crypto.verify_verdict_signature",
                    lambda: verify_verdict_signature(typed_data, signature, signer.address),
                )
            ],
        ),
        (
            "canonicalize action",
            ("rfc8785.dumps", lambda: rfc8785.dumps(ACTION)),
            [("crypto.canonicalize", lambda: canonicalize(ACTION))],
        ),
        (
            "canonicalize audit entry",
            ("rfc8785.dumps", lambda: rfc8785.dumps(AUDIT_ENTRY)),
            [("crypto.canonicalize", lambda: canonicalize(AUDIT_ENTRY))],
        ),
    ]

    header = f"{'operation':<26} {'implementation':<38} {'µs/op':>9} {'ops/s':>10} {'vs baseline':>12}"
    print(header)
    print("-" * len(header))
    for title, (baseline_name, baseline), candidates in groups:
        baseline_us = measure(baseline)
        rate = 1e6 / baseline_us
        print(f"{title:<26} {baseline_name:<38} {baseline_us:>9.1f} {rate:>10,.0f} {'(baseline)':>12}")
        for name, candidate in candidates:
            candidate_us = measure(candidate)
            speedup = f"{baseline_us / candidate_us:.1f}x"
            print(f"{'':<26} {name:<38} {candidate_us:>9.1f} {1e6 / candidate_us:>10,.0f} {speedup:>12}")


if __name__ == "__main__":
    main()
