"""`verdict policy check FILE` and `verdict policy test FILE CASES.yaml`."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
AP_POLICY = EXAMPLES / "accounts-payable.yaml"
AP_CASES = EXAMPLES / "accounts-payable.cases.yaml"


def test_cli_policy_check(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["policy", "check", str(EXAMPLES / "policy.yaml")])
    assert ok.exit_code == 0 and "ok (5 rules" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "schema: verdict.policy/v1\nrules:\n  - {id: cfo, decision: ESCALATE, match: {action.amount: {gt: 5000.5}}}\n"
    )
    result = runner.invoke(main, ["policy", "check", str(bad)])
    assert result.exit_code == 1
    assert "rules[0].match.action.amount.gt [cfo]: gt takes a decimal string" in result.output
    assert "rules[0].approvals [cfo]:" in result.output


def test_cli_policy_test_exits_non_zero_on_failure(tmp_path: Path) -> None:
    runner = CliRunner()
    passing = runner.invoke(main, ["policy", "test", str(AP_POLICY), str(AP_CASES)])
    assert passing.exit_code == 0, passing.output
    assert "0 failed" in passing.output
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases:\n  - {name: must deny, action: {type: wire}, expect: {decision: ALLOW}}\n")
    failing = runner.invoke(main, ["policy", "test", str(AP_POLICY), str(cases), "-v"])
    assert failing.exit_code == 1
    assert "FAIL must deny" in failing.output and "0 passed, 1 failed" in failing.output
