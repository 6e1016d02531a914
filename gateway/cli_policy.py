"""`verdict policy`: check a policy document and run its table-driven tests, offline.

`verdict policy check FILE` validates (exit 1 with every problem, each anchored to its rule);
`verdict policy test FILE CASES.yaml` runs the cases (exit 1 if any fails, like `opa test`);
`verdict policy simulate --url URL --token TOKEN --tenant T FILE` asks a gateway which of the
tenant's recent decisions FILE would change (nothing is written).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # the policy engine (and CEL's) is imported by the commands that use it
    from policy import LoadedPolicy, PolicyInvalid


def _media_type(path: Path) -> str:
    return "application/json" if path.suffix.lower() == ".json" else "application/yaml"


def _load(path: Path) -> LoadedPolicy:
    from policy import PolicyInvalid, load_policy

    try:
        return load_policy(path.read_bytes(), _media_type(path))
    except PolicyInvalid as invalid:
        _print_problems(path, invalid)
        sys.exit(1)


def _print_problems(path: Path, invalid: PolicyInvalid) -> None:
    count = len(invalid.problems)
    click.echo(f"{path}: {count} problem{'s' if count != 1 else ''}", err=True)
    for problem in invalid.problems:
        anchor = f" [{problem.rule}]" if problem.rule else ""
        click.echo(f"  {problem.path or '(document)'}{anchor}: {problem.message}", err=True)


@click.group("policy")
def policy_group() -> None:
    """Policy documents: validate them and run their tests offline."""


@policy_group.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def check(file: Path) -> None:
    """Validate FILE (YAML or JSON); print every problem with its path and rule."""
    loaded = _load(file)
    compiled = loaded.compiled
    click.echo(f"{file}: ok ({len(compiled.rules)} rules, hash {loaded.hash})")
    if compiled.context_needs:
        click.echo(f"  context needed: {', '.join(sorted(compiled.context_needs))}")


@policy_group.command("test")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("cases", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--verbose", "-v", is_flag=True, help="Print the explain trace of failing cases.")
def test(file: Path, cases: Path, verbose: bool) -> None:
    """Run the table-driven CASES against FILE; exit 1 if any case fails."""
    from policy import PolicyInvalid
    from policy.testing import load_cases, run_cases

    loaded = _load(file)
    try:
        table = load_cases(cases.read_bytes(), _media_type(cases))
    except PolicyInvalid as invalid:
        _print_problems(cases, invalid)
        sys.exit(1)
    report = run_cases(loaded.compiled, table)
    for result in report.results:
        if result.passed:
            click.echo(f"PASS {result.name}")
            continue
        click.echo(f"FAIL {result.name}")
        for failure in result.failures:
            click.echo(f"     {failure}")
        if verbose:
            for item in result.decision.checks:
                if item.matched:
                    click.echo(f"     matched {item.kind} {item.rule}: {'; '.join(item.conditions)}")
    click.echo(f"{report.passed} passed, {report.failed} failed")
    if not report.ok:
        sys.exit(1)


@policy_group.command("simulate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", required=True, help="The gateway, e.g. http://127.0.0.1:8000")
@click.option("--token", required=True, envvar="VERDICT_TOKEN", help="A tenant admin's or auditor's token.")
@click.option("--tenant", required=True)
@click.option("--last", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the gateway's answer as JSON.")
def simulate(file: Path, url: str, token: str, tenant: str, last: int, as_json: bool) -> None:
    """Replay the tenant's last N actions through FILE; print every decision that would change."""
    import httpx

    from gateway.cli_http import describe_problem, gateway_errors, problem_of

    with gateway_errors(url):
        response = httpx.post(
            f"{url.rstrip('/')}/v1/tenants/{tenant}/policies/simulate",
            params={"last": last},
            content=file.read_bytes(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": _media_type(file)},
            timeout=60,
        )
        if response.status_code != 200:
            raise describe_problem(response.status_code, problem_of(response), url.rstrip("/"))
        result = response.json()
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for change in result["changes"]:
        click.echo(
            f"{change['id']}: {change['before_decision']} ({change['before_reason']})"
            f" -> {change['after_decision']} ({change['after_reason']})"
        )
    click.echo(f"{len(result['changes'])} of {result['replayed']} decisions would change")
