"""`verdict audit watch` and `verdict audit mirror`: an auditor's view of a tenant's log from the
outside, through its API (`audit.monitor`); run from cron, or `watch --follow`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from audit.errors import AuditError


def _options(command):
    command = click.option("--token", envvar="VERDICT_TOKEN", default=None,
                           help="An auditor's token [env VERDICT_TOKEN].")(command)  # fmt: skip
    command = click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False),
                           default=None, help="c2sp.org/tlog-policy file: witness quorum to require.")(command)  # fmt: skip
    return click.option("--vkey", required=True, multiple=True,
                        help="The log's verifier key, or @FILE; repeat for retired keys.")(command)  # fmt: skip


def _load(url: str, vkey: tuple[str, ...], token: str | None, policy_path: str | None):
    from audit.cli import _vkey
    from audit.monitor import Fetcher
    from audit.note import parse_vkey
    from audit.witness_policy import parse_policy

    try:
        verifiers = [parse_vkey(_vkey(value)) for value in vkey]
        policy = parse_policy(Path(policy_path).read_text()) if policy_path else None
        return Fetcher(url, token), verifiers, policy
    except (OSError, AuditError) as error:
        raise click.ClickException(str(error)) from None


@click.command("watch")
@click.argument("url")
@_options
@click.option("--state", "state_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File keeping the last checkpoint seen (created on the first run).")  # fmt: skip
@click.option("--follow", is_flag=True, help="Keep watching; print a line per problem.")
@click.option(
    "--interval", type=float, default=30.0, show_default=True, help="Seconds between checks (--follow)."
)
def watch(url: str, vkey, token, policy_path, state_path: Path, follow: bool, interval: float) -> None:
    """Check the log at URL (…/v1/tenants/TENANT) against the last checkpoint seen: a bad signature,
    a missing witness quorum, a rollback or a fork is a problem (exit 1); otherwise keep the new one."""
    from audit.monitor import LogProblem, watch_once

    fetcher, verifiers, policy = _load(url, vkey, token, policy_path)
    problems = 0
    while True:
        try:
            checkpoint = watch_once(fetcher, verifiers, state_path, policy)
            click.echo(f"OK  {checkpoint.origin}: size {checkpoint.size}, root {checkpoint.root_hash.hex()}")
        except LogProblem as problem:
            problems += 1
            click.echo(f"PROBLEM {problem}", err=True)
        if not follow:
            sys.exit(1 if problems else 0)
        time.sleep(interval)


@click.command("mirror")
@click.argument("url")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@_options
def mirror(url: str, directory: Path, vkey, token, policy_path) -> None:
    """Copy the log at URL (…/v1/tenants/TENANT) into DIRECTORY as c2sp.org/tlog-tiles, fetching
    only new tiles, after checking them against the checkpoint and the mirrored one (exit 1 if not)."""
    from audit.monitor import LogProblem, mirror_once

    fetcher, verifiers, policy = _load(url, vkey, token, policy_path)
    try:
        checkpoint, fetched = mirror_once(fetcher, verifiers, directory, policy)
    except LogProblem as problem:
        click.echo(f"PROBLEM {problem}", err=True)
        sys.exit(1)
    click.echo(
        f"OK  {checkpoint.origin}: size {checkpoint.size} mirrored in {directory} ({fetched} tiles fetched)"
    )


LOG_COMMANDS = [watch, mirror]
