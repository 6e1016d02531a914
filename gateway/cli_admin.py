"""`verdict admin`: what operators and tenant admins otherwise do with curl, against a gateway.

tenants (create, show, update), api-keys (create, list, revoke), agents (create, list,
rotate-token, scope, rate-limit), approvers (add, list, change, remove), policies (publish,
list, activate, diff), actions (list, show, cancel), and metrics-token (a token for
`GET /metrics`). The shared options and output are `gateway.cli_admin_base`'s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from gateway.cli_admin_base import (
    Gateway,
    command,
    expiry_options,
    fields,
    reveal,
    table,
    token_out_option,
    unified_diff,
)

MAX_PAGE = 100  # the API's largest page of actions (gateway.services.actions.MAX_PAGE)


def _p(value: str | int) -> str:
    """One path segment, escaped."""
    return quote(str(value), safe="")


@click.group("admin")
def admin_group() -> None:
    """Administer a running gateway: tenants, keys, agents, approvers, policies, actions.

    Every command takes --url (env VERDICT_URL), --token-file (else env VERDICT_TOKEN) and
    --json; --tenant may come from VERDICT_TENANT."""


# ---- tenants


@admin_group.group("tenants")
def tenants() -> None:
    """Create, show and update tenants (creating one needs the admin token)."""


TENANT_FIELDS = ("id", "name", "chain_id", "verifying_contract", "active_policy_version",
                 "rpc_endpoint", "timezone", "created_at")  # fmt: skip


@command(tenants, "create", tenant=False)
@click.argument("tenant_id")
@click.option("--name", required=True)
@click.option("--chain-id", type=int, default=None, help="EIP-712 domain chain id [1].")
@click.option("--verifying-contract", default=None, help="EIP-712 domain verifying contract.")
@click.option("--rpc-url", default=None, help="JSON-RPC URL for contract-wallet (EIP-1271) approvers.")
@click.option("--timezone", default=None, help="IANA time zone of business hours [UTC].")
def tenants_create(gw: Gateway, tenant_id: str, name: str, **optional: Any) -> None:
    """Create tenant TENANT_ID."""
    body = {"id": tenant_id, "name": name, **{k: v for k, v in optional.items() if v is not None}}
    gw.show(gw.call("POST", "/v1/tenants", json=body), lambda t: fields(t, TENANT_FIELDS))


@command(tenants, "show", tenant=False)
@click.argument("tenant_id")
def tenants_show(gw: Gateway, tenant_id: str) -> None:
    """Show tenant TENANT_ID."""
    gw.show(gw.call("GET", f"/v1/tenants/{_p(tenant_id)}"), lambda t: fields(t, TENANT_FIELDS))


@command(tenants, "update", tenant=False)
@click.argument("tenant_id")
@click.option("--rpc-url", default=None, help="New JSON-RPC URL ('' clears it).")
@click.option("--timezone", default=None, help="New IANA time zone ('' clears it: UTC).")
def tenants_update(gw: Gateway, tenant_id: str, rpc_url: str | None, timezone: str | None) -> None:
    """Change a tenant's RPC URL or time zone."""
    body = {k: (v or None) for k, v in (("rpc_url", rpc_url), ("timezone", timezone)) if v is not None}
    if not body:
        raise click.UsageError("say what to change: --rpc-url and/or --timezone")
    answer = gw.call("PATCH", f"/v1/tenants/{_p(tenant_id)}", json=body)
    gw.show(answer, lambda t: fields(t, TENANT_FIELDS))


# ---- api keys


@admin_group.group("api-keys")
def api_keys() -> None:
    """Tenant admins' and auditors' keys: create, list, revoke."""


@command(api_keys, "create")
@click.option("--role", type=click.Choice(["tenant_admin", "auditor"]), required=True)
@expiry_options
@token_out_option
def api_keys_create(
    gw: Gateway, tenant: str, role: str, ttl: int | None, expires_at: str | None, token_out: Path | None
) -> None:
    """Create a key; its token is shown once."""
    body = {"role": role, **_expiry(ttl, expires_at)}
    answer = gw.call("POST", f"/v1/tenants/{_p(tenant)}/api-keys", json=body)

    def human(key: dict[str, Any]) -> None:
        fields(key, ("id", "role", "tenant_id", "expires_at"))
        reveal(key["token"], token_out, role)

    _show_secret(gw, answer, token_out, human)


@command(api_keys, "list")
def api_keys_list(gw: Gateway, tenant: str) -> None:
    """Every key of the tenant, revoked ones too (never a token)."""
    columns = ("id", "role", "agent_id", "created_at", "expires_at", "last_used_at", "revoked_at")
    gw.show(gw.call("GET", f"/v1/tenants/{_p(tenant)}/api-keys"), lambda keys: table(keys, columns))


@command(api_keys, "revoke")
@click.argument("key_id")
def api_keys_revoke(gw: Gateway, tenant: str, key_id: str) -> None:
    """Revoke KEY_ID at once."""
    gw.call("DELETE", f"/v1/tenants/{_p(tenant)}/api-keys/{_p(key_id)}")
    gw.show({"id": key_id, "revoked": True}, lambda _: click.echo(f"revoked {key_id}"))


def _expiry(ttl: int | None, expires_at: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ttl is not None:
        out["ttl_seconds"] = ttl
    if expires_at is not None:
        out["expires_at"] = expires_at
    return out


def _show_secret(gw: Gateway, answer: dict[str, Any], token_out: Path | None, human) -> None:
    """--json prints the answer, token included, unless --token-out took the token."""
    if gw.as_json and token_out is not None:
        reveal(answer["token"], token_out, "the")
        answer = {k: v for k, v in answer.items() if k != "token"}
    gw.show(answer, human)


# ---- agents


@admin_group.group("agents")
def agents() -> None:
    """Agents: create, list, rotate-token, scope, rate-limit."""


@command(agents, "create")
@click.option("--id", "agent_id", default=None, help="The agent's id [generated].")
@click.option("--name", default=None)
@expiry_options
@token_out_option
def agents_create(
    gw: Gateway, tenant: str, agent_id: str | None, name: str | None, ttl: int | None,
    expires_at: str | None, token_out: Path | None,
) -> None:  # fmt: skip
    """Register an agent; its token is shown once."""
    body = {k: v for k, v in (("id", agent_id), ("name", name)) if v is not None}
    answer = gw.call("POST", f"/v1/tenants/{_p(tenant)}/agents", json={**body, **_expiry(ttl, expires_at)})

    def human(agent: dict[str, Any]) -> None:
        fields(agent, ("id", "name", "tenant_id", "key_id", "expires_at"))
        reveal(agent["token"], token_out, "agent")

    _show_secret(gw, answer, token_out, human)


@command(agents, "list")
def agents_list(gw: Gateway, tenant: str) -> None:
    """The tenant's agents."""
    answer = gw.call("GET", f"/v1/tenants/{_p(tenant)}/agents")
    gw.show(answer, lambda rows: table(rows, ("id", "name", "created_at")))


@command(agents, "rotate-token")
@click.argument("agent_id")
@expiry_options
@token_out_option
def agents_rotate_token(
    gw: Gateway, tenant: str, agent_id: str, ttl: int | None, expires_at: str | None, token_out: Path | None
) -> None:
    """A new token for AGENT_ID; every token it had is revoked in the same commit."""
    path = f"/v1/tenants/{_p(tenant)}/agents/{_p(agent_id)}/token"
    answer = gw.call("POST", path, json=_expiry(ttl, expires_at))

    def human(rotated: dict[str, Any]) -> None:
        fields(rotated, ("id", "agent_id", "expires_at", "revoked_key_ids"))
        reveal(rotated["token"], token_out, "agent")

    _show_secret(gw, answer, token_out, human)


@command(agents, "scope")
@click.argument("agent_id")
@click.option("--action-type", "action_types", multiple=True, help="An action type it may propose (repeat).")
@click.option("--asset", "assets", multiple=True, help="An asset it may move (repeat).")
@click.option("--max-amount", default=None, help="Largest amount per action (a decimal string).")
@click.option("--clear", is_flag=True, help="Remove every restriction.")
def agents_scope(
    gw: Gateway, tenant: str, agent_id: str, action_types: tuple[str, ...], assets: tuple[str, ...],
    max_amount: str | None, clear: bool,
) -> None:  # fmt: skip
    """Show AGENT_ID's scope; with --action-type/--asset/--max-amount (or --clear), replace it."""
    path = f"/v1/tenants/{_p(tenant)}/agents/{_p(agent_id)}/scope"
    changing = bool(action_types or assets or max_amount is not None)
    if clear and changing:
        raise click.UsageError("--clear replaces the scope with none: give it alone")
    if clear:
        answer = gw.call("PUT", path, json={})
    elif changing:
        body = {"action_types": list(action_types) or None, "assets": list(assets) or None,
                "max_amount": max_amount}  # fmt: skip
        answer = gw.call("PUT", path, json=body)
    else:
        answer = gw.call("GET", path)

    def human(view: dict[str, Any]) -> None:
        scope = view.get("scope")
        if not scope:
            click.echo(f"{agent_id}: no scope (only the policy restricts it)")
            return
        fields(scope, ("action_types", "assets", "max_amount"))

    gw.show(answer, human)


@command(agents, "rate-limit")
@click.argument("agent_id")
@click.argument("per_minute", required=False)
def agents_rate_limit(gw: Gateway, tenant: str, agent_id: str, per_minute: str | None) -> None:
    """Show AGENT_ID's proposals per minute; with PER_MINUTE (a number, or `default` for the
    tenant's), set it."""
    if per_minute is None:
        limits = gw.call("GET", f"/v1/tenants/{_p(tenant)}/rate-limits")
    else:
        value = _per_minute(per_minute)
        path = f"/v1/tenants/{_p(tenant)}/agents/{_p(agent_id)}/rate-limits"
        limits = gw.call("PUT", path, json={"propose_per_minute": value})
    own = next((a["propose_per_minute"] for a in limits["agents"] if a["agent_id"] == agent_id), None)
    answer = {"agent_id": agent_id, "propose_per_minute": own,
              "effective_propose_per_minute": own if own is not None else limits["effective_propose_per_minute"]}  # fmt: skip
    gw.show(answer, lambda a: click.echo(
        f"{agent_id}: {a['effective_propose_per_minute']} proposals per minute"
        + ("" if own is not None else " (the tenant's limit)")
    ))  # fmt: skip


def _per_minute(text: str) -> int | None:
    if text == "default":
        return None
    try:
        value = int(text)
    except ValueError:
        raise click.BadParameter("a whole number of proposals per minute, or `default`") from None
    if value < 0:
        raise click.BadParameter("a whole number of proposals per minute, or `default`")
    return value


# ---- approvers


@admin_group.group("approvers")
def approvers() -> None:
    """Approvers (wallet addresses and their roles): add, list, change, remove."""


APPROVER_COLUMNS = ("address", "name", "roles", "kind", "created_at", "removed_at")


@command(approvers, "add")
@click.argument("address")
@click.option("--role", "roles", multiple=True, required=True, help="A role it approves in (repeat).")
@click.option("--name", default=None)
@click.option("--contract", is_flag=True, help="A contract wallet (EIP-1271, e.g. a Safe).")
def approvers_add(
    gw: Gateway, tenant: str, address: str, roles: tuple[str, ...], name: str | None, contract: bool
) -> None:
    """Register ADDRESS as an approver in the given roles."""
    body: dict[str, Any] = {
        "address": address,
        "roles": list(roles),
        "kind": "contract" if contract else "eoa",
    }
    if name is not None:
        body["name"] = name
    answer = gw.call("POST", f"/v1/tenants/{_p(tenant)}/approvers", json=body)
    gw.show(answer, lambda a: fields(a, APPROVER_COLUMNS))


@command(approvers, "list")
@click.option("--removed", is_flag=True, help="Removed approvers too.")
def approvers_list(gw: Gateway, tenant: str, removed: bool) -> None:
    """The tenant's approvers."""
    params = {"removed": "true"} if removed else None
    answer = gw.call("GET", f"/v1/tenants/{_p(tenant)}/approvers", params=params)
    gw.show(answer, lambda rows: table(rows, APPROVER_COLUMNS))


@command(approvers, "change")
@click.argument("address")
@click.option("--role", "roles", multiple=True, help="Its roles from now on (repeat; replaces them).")
@click.option("--name", default=None)
def approvers_change(
    gw: Gateway, tenant: str, address: str, roles: tuple[str, ...], name: str | None
) -> None:
    """Change ADDRESS's roles or name."""
    body: dict[str, Any] = {}
    if roles:
        body["roles"] = list(roles)
    if name is not None:
        body["name"] = name
    if not body:
        raise click.UsageError("say what to change: --role and/or --name")
    answer = gw.call("PATCH", f"/v1/tenants/{_p(tenant)}/approvers/{_p(address)}", json=body)
    gw.show(answer, lambda a: fields(a, APPROVER_COLUMNS))


@command(approvers, "remove")
@click.argument("address")
def approvers_remove(gw: Gateway, tenant: str, address: str) -> None:
    """No new approvals from ADDRESS; those it gave stand."""
    answer = gw.call("DELETE", f"/v1/tenants/{_p(tenant)}/approvers/{_p(address)}")
    gw.show(answer, lambda a: click.echo(f"removed {a['address']} at {a['removed_at']}"))


# ---- policies


@admin_group.group("policies")
def policies() -> None:
    """Policy versions: publish, list, activate, diff."""


POLICY_COLUMNS = ("version", "active", "hash", "created_at", "created_by")


@command(policies, "publish")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--no-activate", is_flag=True, help="Publish without making it the active version.")
def policies_publish(gw: Gateway, tenant: str, file: Path, no_activate: bool) -> None:
    """Publish FILE (YAML or JSON) as the tenant's next version (active unless --no-activate)."""
    media_type = "application/json" if file.suffix.lower() == ".json" else "application/yaml"
    answer = gw.call(
        "POST", f"/v1/tenants/{_p(tenant)}/policies", content=file.read_bytes(),
        params={"activate": "false" if no_activate else "true"}, headers={"Content-Type": media_type},
    )  # fmt: skip
    gw.show(answer, lambda v: click.echo(
        f"published version {v['version']} ({v['hash']}){' and activated it' if v['active'] else ''}"
    ))  # fmt: skip


@command(policies, "list")
def policies_list(gw: Gateway, tenant: str) -> None:
    """Every version, the active one marked."""
    answer = gw.call("GET", f"/v1/tenants/{_p(tenant)}/policies")
    gw.show(answer, lambda rows: table(rows, POLICY_COLUMNS))


@command(policies, "activate")
@click.argument("version", type=click.IntRange(min=1))
def policies_activate(gw: Gateway, tenant: str, version: int) -> None:
    """Make VERSION the active one (new proposals are decided under it)."""
    answer = gw.call("POST", f"/v1/tenants/{_p(tenant)}/policies/{version}/activate")
    gw.show(answer, lambda v: click.echo(f"version {v['version']} is active ({v['hash']})"))


@command(policies, "diff")
@click.argument("old", type=click.IntRange(min=1))
@click.argument("new", type=click.IntRange(min=1))
def policies_diff(gw: Gateway, tenant: str, old: int, new: int) -> None:
    """A unified diff of versions OLD and NEW (as YAML)."""
    left = gw.call("GET", f"/v1/tenants/{_p(tenant)}/policies/{old}")
    right = gw.call("GET", f"/v1/tenants/{_p(tenant)}/policies/{new}")
    lines = unified_diff(left["document"], right["document"], f"version {old}", f"version {new}")
    answer = {"old": old, "new": new, "identical": not lines, "diff": lines}
    gw.show(answer, lambda a: click.echo("\n".join(lines) if lines else "the documents are identical"))


# ---- actions


@admin_group.group("actions")
def actions() -> None:
    """Actions: list (with the API's filters), show (with the explain trace), cancel."""


ACTION_COLUMNS = ("action_id", "agent_id", "type", "decision", "status", "reason", "created_at")


@command(actions, "list")
@click.option("--agent", "agent_id", default=None)
@click.option("--decision", type=click.Choice(["ALLOW", "ESCALATE", "DENY"]), default=None)
@click.option(
    "--status", default=None,
    type=click.Choice(["allowed", "denied", "pending_approval", "rejected", "expired", "cancelled"]),
)  # fmt: skip
@click.option("--type", "action_type", default=None, help="The action type.")
@click.option("--role", default=None, help="Pending actions that need this approver role.")
@click.option("--from", "created_from", default=None, help="Created at or after (RFC 3339).")
@click.option("--to", "created_to", default=None, help="Created before (RFC 3339).")
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=50, show_default=True)
@click.option("--cursor", default=None, help="Where an earlier page ended (its next cursor).")
def actions_list(gw: Gateway, tenant: str, **filters: Any) -> None:
    """The tenant's actions, newest first, one page at a time."""
    names = {"agent_id": "agent_id", "decision": "decision", "status": "status", "action_type": "type",
             "role": "role", "created_from": "from", "created_to": "to", "limit": "limit", "cursor": "cursor"}  # fmt: skip
    params = {"tenant_id": tenant, **{names[k]: v for k, v in filters.items() if v is not None}}
    page = gw.call("GET", "/v1/actions", params=params)

    def human(answer: dict[str, Any]) -> None:
        table(answer["actions"], ACTION_COLUMNS, empty="(no actions)")
        if answer.get("next_cursor"):
            click.echo(f"more: --cursor {answer['next_cursor']}")

    gw.show(page, human)


@command(actions, "show", tenant=False)
@click.argument("action_id")
@click.option("--explain/--no-explain", default=True, show_default=True, help="Print the explain trace.")
def actions_show(gw: Gateway, action_id: str, explain: bool) -> None:
    """One action: its decision, approvals, executions and (by default) its explain trace."""
    gw.show(gw.call("GET", f"/v1/actions/{_p(action_id)}"), lambda a: _print_action(a, explain))


def _print_action(action: dict[str, Any], explain: bool) -> None:
    fields(action, ("action_id", "tenant_id", "agent_id", "type", "decision", "status", "reason",
                    "matched_rules", "policy_version", "summary", "approval_expires_at", "created_at",
                    "decided_at"))  # fmt: skip
    click.echo(f"{'action:':<23}{_compact(action['action'])}")
    for approval in action.get("approvals") or []:
        verb = "approved" if approval["approve"] else "rejected"
        click.echo(
            f"{'approval:':<23}{approval['address']} {verb} as {approval['role']} at {approval['signed_at']}"
        )
    for execution in action.get("executions") or []:
        click.echo(
            f"{'execution:':<23}{execution.get('execution_id') or execution.get('id')} {execution.get('status')}"
        )
    if explain:
        checks = action.get("checks") or []
        click.echo("explain trace:" if checks else "explain trace: (none recorded)")
        for check in checks:
            mark = "matched" if check["matched"] else "-"
            click.echo(f"  {mark:<8}{check.get('kind', 'rule')} {check['rule']}")
            for condition in check.get("conditions") or []:
                click.echo(f"            {condition}")
            if check.get("error"):
                click.echo(f"            error: {check['error']}")


def _compact(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@command(actions, "cancel", tenant=False)
@click.argument("action_id")
def actions_cancel(gw: Gateway, action_id: str) -> None:
    """Cancel a pending action (a tenant admin's or its agent's token)."""
    answer = gw.call("DELETE", f"/v1/actions/{_p(action_id)}")
    gw.show(answer, lambda a: click.echo(f"{a['action_id']} is {a['status']}"))


# ---- metrics


@admin_group.command("metrics-token")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def metrics_token(file: Path) -> None:
    """Write a new token for `GET /metrics` to FILE (mode 0600, never printed). Give the gateway
    VERDICT_METRICS_TOKEN_FILE=FILE and the scraper the same token (Prometheus:
    `authorization: {credentials_file: FILE}`)."""
    from gateway.clock import new_token

    try:
        descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise click.ClickException(f"{file}: cannot create ({exc.strerror}); not overwriting") from None
    with os.fdopen(descriptor, "w") as out:
        out.write(new_token() + "\n")
    click.echo(
        f"metrics token written to {file} (mode 0600); start the gateway with VERDICT_METRICS_TOKEN_FILE={file}"
    )
