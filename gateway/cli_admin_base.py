"""The parts every `verdict admin` command shares (gateway.cli_admin holds the commands).

Every command takes `--url` (or VERDICT_URL), `--token-file` (or the token in
VERDICT_TOKEN) and `--json` (the gateway's answer as JSON, for scripts; human tables otherwise);
`--tenant` may come from VERDICT_TENANT. A failure is one line on stderr and exit 1
(`gateway.cli_http`). Tokens the gateway shows once are printed once, or written to a 0600 file
with `--token-out`.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import httpx
import yaml

from gateway.cli_http import describe_problem, gateway_errors, problem_of

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT_SECONDS = 30.0


class Gateway:
    """One command's calls: the URL, the bearer token, and how answers are printed."""

    def __init__(self, url: str, token: str | None, as_json: bool) -> None:
        self.url, self.token, self.as_json = url.rstrip("/"), token, as_json

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded answer (None for 204). Raises GatewayCommandError (via `gateway_errors`)
        for a refusal, an unreachable gateway or an answer that is not JSON."""
        if self.token is None:
            raise click.UsageError("no token: pass --token-file FILE or set VERDICT_TOKEN")
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        with gateway_errors(self.url):
            response = httpx.request(
                method, self.url + path, headers=headers, timeout=TIMEOUT_SECONDS, **kwargs
            )
            if response.status_code >= 400:
                raise describe_problem(response.status_code, problem_of(response), self.url)
            return None if response.status_code == 204 else response.json()

    def show(self, answer: Any, human: Callable[[Any], None]) -> None:
        if self.as_json:
            click.echo(json.dumps(answer, indent=2))
        else:
            human(answer)


def _token(token_file: Path | None) -> str | None:
    """From --token-file (owner-only, as the gateway writes admin.token), else VERDICT_TOKEN.
    Raises ClickException for an unreadable or group-readable file."""
    if token_file is None:
        return os.environ.get("VERDICT_TOKEN") or None
    from crypto.errors import KeyFileError
    from crypto.keys import read_secret_file

    try:
        return read_secret_file(token_file).decode("utf-8", "replace").strip()
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None


def command(group: click.Group, name: str, *, tenant: bool = True):
    """A leaf command with the shared options; the function receives `gw: Gateway` first
    (and `tenant` when asked)."""

    def decorate(function):
        @group.command(name, help=function.__doc__)
        @click.option("--url", envvar="VERDICT_URL", default=DEFAULT_URL, show_default=True,
                      help="The gateway [env VERDICT_URL].")  # fmt: skip
        @click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                      help="A file holding the bearer token [else env VERDICT_TOKEN].")  # fmt: skip
        @click.option("--json", "as_json", is_flag=True, help="Print the gateway's answer as JSON.")
        @functools.wraps(function)
        def run(url: str, token_file: Path | None, as_json: bool, **options: Any) -> None:
            function(Gateway(url, _token(token_file), as_json), **options)

        if tenant:
            run = click.option("--tenant", envvar="VERDICT_TENANT", required=True,
                               help="The tenant [env VERDICT_TENANT].")(run)  # fmt: skip
        return run

    return decorate


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], empty: str = "(none)") -> None:
    """Aligned columns, one row per line; `-` for an absent value."""
    if not rows:
        click.echo(empty)
        return
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(r[i]) for r in cells)) for i, column in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def fields(answer: dict[str, Any], names: Sequence[str]) -> None:
    """`name: value` lines for one object."""
    for name in names:
        if name in answer:
            click.echo(f"{name + ':':<23}{_cell(answer[name])}")


def reveal(secret: str, token_out: Path | None, what: str) -> None:
    """Print a token shown once, or write it to `token_out` (mode 0600, never overwritten)."""
    if token_out is None:
        click.echo(f"token: {secret}  (shown once: keep it now)")
        return
    try:
        descriptor = os.open(token_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise click.ClickException(f"{token_out}: cannot create ({exc.strerror}); the token is lost,"
                                   f" rotate it again with a free path") from None  # fmt: skip
    with os.fdopen(descriptor, "w") as out:
        out.write(secret + "\n")
    click.echo(f"{what} token written to {token_out} (mode 0600)")


def expiry_options(function):
    function = click.option("--ttl", type=click.IntRange(min=1), default=None,
                            help="Seconds until the token expires.")(function)  # fmt: skip
    return click.option("--expires-at", default=None, help="RFC 3339 expiry (instead of --ttl).")(function)


def token_out_option(function):
    return click.option(
        "--token-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Write the new token to this file (mode 0600) instead of printing it.",
    )(function)  # fmt: skip


def unified_diff(left: dict[str, Any], right: dict[str, Any], left_name: str, right_name: str) -> list[str]:
    """The documents as YAML (keys in their order), line by line."""
    a = yaml.safe_dump(left, sort_keys=False, allow_unicode=True).splitlines()
    b = yaml.safe_dump(right, sort_keys=False, allow_unicode=True).splitlines()
    return list(difflib.unified_diff(a, b, left_name, right_name, lineterm=""))
