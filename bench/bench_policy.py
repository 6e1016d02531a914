"""Benchmark: policy evaluation (examples/policy.yaml, issue 3's reference set, 50 rules, the full AP policy).

Run: python bench/bench_policy.py [--number N] [--repeat R]

Prints the machine's facts, then

1. µs per evaluation (best of R runs of N calls) of examples/policy.yaml for an
   ALLOW, an ESCALATE and a DENY request, against the same policy without its
   CEL rule and a hand-written Python function deciding the same thing;
2. median µs per evaluation, explain off and on, of issue 3's reference set
   (vendor in a 1,000-entry blocklist, asset not a stablecoin, two amount
   bands, allow), a 50-rule document and examples/accounts-payable.yaml (risk,
   classifications, action types, limits with usage in memory, context),
   against a CEL-only baseline measured in the same run: the same rules as a
   first-match list of compiled CEL programs over a Context built once per
   request outside the timing (amounts as CEL doubles, so not exact), and the
   issue's targets.
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

import cel

from policy import CompiledPolicy, EvaluationInput, compile_document, load_policy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.unit.policy.reference_set import BLOCKLIST, STABLECOINS, reference_document  # noqa: E402

EXAMPLE = ROOT / "examples" / "policy.yaml"
ACCOUNTS_PAYABLE = ROOT / "examples" / "accounts-payable.yaml"
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
    print()
    compare_with_cel(max(args.number // 10, 200), max(args.repeat * 3, 15))


# -- issue 3: reference set, 50 rules, full document, against CEL -----------------------------------

REFERENCE_CEL = [
    ("DENY", "action.vendor in blocked_vendors"),
    ("DENY", "!(action.asset in stablecoins)"),
    ("ESCALATE", "double(action.amount) > 5000.0 && double(action.amount) <= 50000.0"),
    ("ESCALATE", "double(action.amount) > 50000.0"),
    ("ALLOW", "true"),
]


def reference_actions() -> list[dict[str, Any]]:
    return [
        {"type": "pay_invoice", "vendor": "acme-supplies", "asset": "USDC", "amount": "120.00"},
        {"type": "pay_invoice", "vendor": "acme-supplies", "asset": "USDC", "amount": "7800.00"},
        {"type": "pay_invoice", "vendor": "acme-supplies", "asset": "EURC", "amount": "75000.00"},
        {"type": "pay_invoice", "vendor": "blocked-vendor-0500", "asset": "USDC", "amount": "7800.00"},
        {"type": "pay_invoice", "vendor": "acme-supplies", "asset": "DOGE", "amount": "10.00"},
    ]


def fifty_rule_document() -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """49 rules that do not match the benchmark actions (on several fields and operators), then ALLOW."""
    rules: list[dict[str, Any]] = []
    expressions = []
    for index in range(49):
        kind = index % 4
        if kind == 0:
            match = {"action.vendor": {"eq": f"vendor-{index}"}}
            source = f'action.vendor == "vendor-{index}"'
        elif kind == 1:
            match = {"action.type": {"eq": "pay_invoice"}, "action.amount": {"gt": str(100000 + index)}}
            source = f'action.type == "pay_invoice" && double(action.amount) > {100000 + index}.0'
        elif kind == 2:
            match = {"action.asset": {"in": [f"COIN{index}", f"TOKEN{index}"]}}
            source = f'action.asset in ["COIN{index}", "TOKEN{index}"]'
        else:
            match = {"action.memo": {"exists": True}, "action.vendor": {"ne": "x"}}
            source = 'has(action.memo) && action.vendor != "x"'
        decision = "DENY" if index % 2 else "ESCALATE"
        rule: dict[str, Any] = {"id": f"r{index:02d}", "decision": decision, "match": match}
        if decision == "ESCALATE":
            rule["approvals"] = {"threshold": 1, "roles": ["cfo"]}
        rules.append(rule)
        expressions.append((decision, source))
    rules.append({"id": "allow", "decision": "ALLOW", "match": {}})
    expressions.append(("ALLOW", "true"))
    return {"schema": "verdict.policy/v1", "rules": rules}, expressions


class CelFirstMatch:
    """The baseline: compiled CEL programs tried in order; the first true one decides."""

    def __init__(self, expressions: list[tuple[str, str]]) -> None:
        self.programs = [(decision, cel.compile(source)) for decision, source in expressions]

    def decide(self, context: Any) -> str:
        for decision, program in self.programs:
            if program.execute(context):
                return decision
        return "DENY"


def median_microseconds(call: Any, number: int, repeat: int) -> float:
    runs = sorted(timeit.repeat(call, number=number, repeat=repeat))
    return runs[len(runs) // 2] / number * 1e6


def measure(
    policy: CompiledPolicy, requests: list[EvaluationInput], number: int, repeat: int
) -> tuple[float, float]:
    """Median µs per evaluation, explain off and on, averaged over ``requests``."""
    off = sum(
        median_microseconds(lambda r=r: policy.evaluate(r, explain=False), number, repeat) for r in requests
    )
    on = sum(median_microseconds(lambda r=r: policy.evaluate(r), number, repeat) for r in requests)
    return off / len(requests), on / len(requests)


def measure_cel(baseline: CelFirstMatch, contexts: list[Any], number: int, repeat: int) -> float:
    total = sum(median_microseconds(lambda c=c: baseline.decide(c), number, repeat) for c in contexts)
    return total / len(contexts)


def compare_with_cel(number: int, repeat: int) -> None:
    rows = []
    # (1) the reference set, checked against the CEL baseline's decisions
    policy = compile_document(reference_document())
    baseline = CelFirstMatch(REFERENCE_CEL)
    actions = reference_actions()
    requests = [EvaluationInput(action, AGENT, TENANT, NOW) for action in actions]
    contexts = [
        cel.Context({"action": action, "blocked_vendors": BLOCKLIST, "stablecoins": STABLECOINS})
        for action in actions
    ]
    for request, context in zip(requests, contexts, strict=True):
        assert policy.evaluate(request).decision == baseline.decide(context), request.action
    off, on = measure(policy, requests, number, repeat)
    rows.append(
        (
            "reference set (5 rules, 1,000 blocked)",
            off,
            on,
            measure_cel(baseline, contexts, number, repeat),
            "≤ 10 / ≤ 25",
        )
    )
    # (2) 50 rules
    document, expressions = fifty_rule_document()
    policy = compile_document(document)
    baseline = CelFirstMatch(expressions)
    contexts = [cel.Context({"action": action}) for action in actions]
    for request, context in zip(requests, contexts, strict=True):
        assert policy.evaluate(request).decision == baseline.decide(context) == "ALLOW"
    off, on = measure(policy, requests, number, repeat)
    rows.append(("50 rules", off, on, measure_cel(baseline, contexts, number, repeat), "— / ≤ 50"))
    # (3) the full accounts-payable document: risk, classifications, types, limits, context
    policy = load_policy(ACCOUNTS_PAYABLE.read_bytes(), "application/yaml").compiled
    tenant = {**TENANT, "timezone": "America/New_York"}
    usage = {
        "daily-spend-per-agent": Decimal("15000.00"),
        "weekly-spend-per-vendor": Decimal("20000"),
        "payments-per-hour": Decimal(4),
    }
    context = {"vendor": {"first_seen": False, "prior_count": 14}}
    full_actions = [
        {
            "type": "pay_invoice",
            "amount": "120.00",
            "asset": "USDC",
            "vendor": "acme-supplies",
            "invoice": "inv_1",
        },
        {
            "type": "pay_invoice",
            "amount": "7800.00",
            "asset": "USDC",
            "vendor": "acme-supplies",
            "invoice": "inv_8231",
        },
        {
            "type": "pay_invoice",
            "amount": "900.00",
            "asset": "USDC",
            "vendor": "evil-corp",
            "invoice": "inv_2",
        },
        {"type": "export_report", "report": "q3", "resource_type": "payroll"},
    ]
    requests = [EvaluationInput(a, AGENT, tenant, NOW, context=context, usage=usage) for a in full_actions]
    off, on = measure(policy, requests, number, repeat)
    claims = sum(
        median_microseconds(lambda r=r: policy.limit_claims(r), number, repeat) for r in requests
    ) / len(requests)
    rows.append(("accounts-payable.yaml (full)", off, on, None, "— / ≤ 100"))
    rows.append(("  + limit_claims() before it", off + claims, on + claims, None, ""))

    header = f"{'document':<42} {'explain off':>12} {'explain on':>11} {'CEL only':>9}  target µs (off / on)"
    print(header)
    print("-" * len(header))
    for name, off, on, cel_us, target in rows:
        cel_text = f"{cel_us:>7.2f}µs" if cel_us is not None else f"{'n/a':>9}"
        print(f"{name:<42} {off:>10.2f}µs {on:>9.2f}µs {cel_text}  {target}")
    print(f"\nmedian of {repeat} runs of {number} calls per request, averaged over the requests; one thread.")
    print("CEL only: compiled programs, first match wins, Context built once per request outside the timing.")


if __name__ == "__main__":
    main()
