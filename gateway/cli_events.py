"""`verdict events tail`: follow a tenant's events from a terminal (long polls; resumes after a
dropped connection without missing or repeating one)."""

from __future__ import annotations

import json
from typing import Any

import click

from gateway.client import VerdictClient

_SCALARS = (str, int, float, bool)


def describe(event: dict[str, Any]) -> str:
    """One line for people: seq, time, type, action, and the entry's short facts."""
    data = event["data"]
    if event["type"] == "action.proposed":
        facts = {key: data.get(key) for key in ("agent", "decision", "status", "reason")}
        action = data.get("action") if isinstance(data.get("action"), dict) else {}
        facts.update({key: action[key] for key in ("type", "amount", "asset", "vendor") if key in action})
    else:
        facts = {key: value for key, value in data.items() if isinstance(value, _SCALARS)}
    text = " ".join(f"{key}={value}" for key, value in facts.items() if value is not None)
    return f"{event['seq']:>7}  {event['time']}  {event['type']:<20} {event['action_id'] or '-':<30} {text}"[
        :240
    ]


@click.group("events")
def events_group() -> None:
    """A tenant's live events (views of its audit log)."""


@events_group.command("tail")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, envvar="VERDICT_URL")
@click.option(
    "--token", required=True, envvar="VERDICT_TOKEN", help="A tenant admin's, auditor's or agent's token."
)
@click.option("--tenant", required=True)
@click.option("--after", type=int, default=None, help="Start after this seq (-1: from the first) [now].")
@click.option(
    "--type", "types", multiple=True, help="Only this type (repeat; `execution.*` matches a prefix)."
)
@click.option("--action", "action_id", default=None, help="Only this action's events.")
@click.option("--agent", "agent_id", default=None, help="Only this agent's actions' events.")
@click.option("--json", "as_json", is_flag=True, help="One event JSON per line.")
@click.option("--no-follow", is_flag=True, help="Stop once caught up instead of waiting for more.")
def tail(
    url: str,
    token: str,
    tenant: str,
    after: int | None,
    types: tuple[str, ...],
    action_id: str | None,
    agent_id: str | None,
    as_json: bool,
    no_follow: bool,
) -> None:
    """Print the tenant's events as they commit, until interrupted (Ctrl-C)."""
    from gateway.cli_http import gateway_errors

    with VerdictClient(url, token) as client, gateway_errors(url):
        try:
            for event in client.events(
                tenant, after=after, types=list(types) or None, action_id=action_id, agent_id=agent_id,
                follow=not no_follow,
            ):  # fmt: skip
                click.echo(json.dumps(event, separators=(",", ":")) if as_json else describe(event))
        except KeyboardInterrupt:
            return
