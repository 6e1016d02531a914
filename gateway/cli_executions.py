"""`verdict executions show ID`: an execution as people read it (status, rail, reference, attempts,
failure code, rollback), fetched from a running gateway with a token."""

from __future__ import annotations

import json

import click

from gateway.client import VerdictClient


@click.group("executions")
def executions_group() -> None:
    """Executions of allowed actions on rails."""


def _lines(execution: dict) -> list[str]:
    lines = [
        f"{execution['execution_id']}  {execution['status']}",
        f"  action     {execution['action_id']}",
        f"  rail       {execution['rail']} ({execution['rail_kind']})",
        f"  requested  {execution['created_at']} by {execution['requested_by']}",
        f"  attempts   {execution['attempts']}",
    ]
    if execution.get("reference"):
        lines.append(f"  reference  {execution['reference']}")
    for label, key in (
        ("submitted", "submitted_at"),
        ("finished", "finished_at"),
        ("rolled back", "rolled_back_at"),
    ):
        if execution.get(key):
            lines.append(f"  {label:<10} {execution[key]}")
    if execution.get("code"):
        lines.append(f"  failure    {execution['code']}: {execution.get('message') or ''}".rstrip())
    elif execution.get("message") and execution["status"] in ("pending", "submitted"):
        lines.append(f"  last error {execution['message']}")
    rollback = execution.get("rollback")
    if rollback:
        lines.append(
            f"  rollback   {rollback['status']} ({rollback['reason']!r}, by {rollback['requested_by']})"
        )
    lines.append(f"  audit      entries {', '.join(map(str, execution['audit_event_ids']))}")
    return lines


@executions_group.command("show")
@click.argument("execution_id")
@click.option("--url", envvar="VERDICT_URL", default="http://127.0.0.1:8000", show_default=True,
              help="The gateway [env VERDICT_URL].")  # fmt: skip
@click.option(
    "--token",
    envvar="VERDICT_TOKEN",
    required=True,
    help="An agent's, tenant admin's or auditor's token [env VERDICT_TOKEN].",
)
@click.option(
    "--wait", "wait", type=float, default=None, help="Wait up to this many seconds for it to finish."
)
@click.option("--json", "as_json", is_flag=True, help="Print the gateway's answer as JSON.")
def show(execution_id: str, url: str, token: str, wait: float | None, as_json: bool) -> None:
    """Show one execution (exit 1 when it failed)."""
    from gateway.cli_http import gateway_errors

    with VerdictClient(url, token) as client, gateway_errors(url):
        try:
            if wait is not None:
                execution = client.wait_for_execution(execution_id, wait)
            else:
                execution = client.get_execution(execution_id)
        except TimeoutError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(execution, indent=2) if as_json else "\n".join(_lines(execution)))
    if execution["status"] == "failed":
        raise SystemExit(1)
