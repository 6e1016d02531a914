"""Benchmark: policy evaluation for the example policy (examples/policy.yaml).

Run: python bench/bench_policy.py [--number N] [--repeat R]

Prints the machine's facts, then µs per evaluation (best of R runs of N calls)
for an ALLOW, an ESCALATE and a DENY request, against two baselines measured in
the same run: the same policy without its CEL rule (what `when` costs) and a
hand-written Python function deciding the same thing (what the generic engine
costs over code written for this one policy).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib.metadata
import os
import platform
import sys
import timeit
from decimal import Decimal
from pathlib import Path
from typing import Any

from policy import EvaluationInput, compile_document, load_policy

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "policy.yaml"
AGENT = {"id": "agent-7", "name": "payments-bot"}
TENANT = {"id": "tenant-1", "name": "acme"}
NOW = datetime.datetime(2024, 5, 1, 14, 30, tzinfo=datetime.UTC)
REQUESTS = {
    "ALLOW": {
        "type": "pay_invoice",
        "amount": "120.00",
        "vendor": "acme",
        "currency": "EUR",
        "invoice": "INV-1",
    },
    "ESCALATE": {
        "type": "pay_invoice",
        "amount": "7800.00",
        "vendor": "acme",
        "currency": "EUR",
        "invoice": "INV-2",
    },
    "DENY": {
        "type": "pay_invoice",
        "amount": "7800.00",
        "vendor": "evil-corp",
        "currency": "EUR",
        "invoice": "INV-3",
    },
}
BLOCKED = frozenset({"evil-corp", "shady-llc"})


def decide_by_hand(action: dict[str, Any], now: datetime.datetime) -> str:
    """The example policy written out by hand: the floor for any generic evaluator."""
    amount = action.get("amount")
    value = Decimal(amount) if isinstance(amount, str) else None
    if action.get("vendor") in BLOCKED:
        return "DENY"
    if action.get("type") == "trade_execution" and now.hour >= 22:
        return "DENY"
    if value is None:
        return "DENY"
    if value > 50000 or (action.get("type") == "pay_invoice" and 5000 < value <= 50000):
        return "ESCALATE"
    return "ALLOW"


def describe_machine() -> list[tuple[str, str]]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = ", ".join(
        f"{name} {importlib.metadata.version(dist)}"
        for name, dist in (
            ("cel", "common-expression-language"),
            ("msgspec", "msgspec"),
            ("PyYAML", "PyYAML"),
        )
    )
    return [
        ("python", f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"),
        ("platform", platform.platform()),
        ("cpu", f"{cpu} ({os.cpu_count()} logical)"),
        ("libraries", versions),
    ]


def best_microseconds(call: Any, number: int, repeat: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per run")
    parser.add_argument("--repeat", type=int, default=7, help="runs; the best is reported")
    args = parser.parse_args()

    body = EXAMPLE.read_bytes()
    loaded = load_policy(body, "application/yaml")
    without_cel = copy.deepcopy(loaded.document)
    without_cel["rules"] = [rule for rule in without_cel["rules"] if "when" not in rule]
    match_only = compile_document(without_cel)

    for name, value in describe_machine():
        print(f"{name:<10} {value}")
    load_us = best_microseconds(lambda: load_policy(body, "application/yaml"), max(args.number // 100, 10), 3)
    print(f"\nload_policy(examples/policy.yaml): {load_us:,.0f} µs (parse + validate + compile + hash)\n")

    header = f"{'request':<9} {'decision':<9} {'example':>10} {'no CEL rule':>12} {'by hand':>9}"
    print(header)
    print("-" * len(header))
    for expected, action in REQUESTS.items():
        request = EvaluationInput(action, AGENT, TENANT, NOW)
        decision = loaded.compiled.evaluate(request)
        assert decision.decision == expected == decide_by_hand(action, NOW), (expected, decision)
        assert match_only.evaluate(request).decision == expected
        full = best_microseconds(lambda r=request: loaded.compiled.evaluate(r), args.number, args.repeat)
        bare = best_microseconds(lambda r=request: match_only.evaluate(r), args.number, args.repeat)
        hand = best_microseconds(lambda a=action: decide_by_hand(a, NOW), args.number, args.repeat)
        print(f"{expected:<9} {decision.decision:<9} {full:>8.2f}µs {bare:>10.2f}µs {hand:>7.2f}µs")
    print("\nµs per evaluation, best of", args.repeat, "runs of", args.number, "calls; one thread.")


if __name__ == "__main__":
    main()
