"""`verdict mcp proxy`: put Verdict in front of an MCP server's tools (stdio or streamable HTTP).

The `mcp` SDK is imported only when a command runs, so `verdict serve` never loads it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click


def read_agent_token(path: Path, agent: str | None) -> tuple[str, str]:
    """(agent id, token) from a file holding `TOKEN` or `AGENT_ID TOKEN` (as `verdict serve --demo`
    writes `demo-agent.token`). Raises click.UsageError when the agent id is nowhere."""
    try:
        words = path.read_text(encoding="utf-8").split()
    except OSError as exc:
        raise click.UsageError(f"cannot read the agent token file {path}: {exc.strerror}") from None
    if len(words) == 2:
        return agent or words[0], words[1]
    if len(words) == 1 and agent:
        return agent, words[0]
    raise click.UsageError(f"{path} must hold `AGENT_ID TOKEN`, or `TOKEN` with --agent naming the agent")


def environment(items: tuple[str, ...]) -> dict[str, str]:
    """`NAME=VALUE` as given, `NAME` from this process's environment (skipped when unset)."""
    chosen: dict[str, str] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if equals:
            chosen[name] = value
        elif name in os.environ:
            chosen[name] = os.environ[name]
    return chosen


def _agent_options(command):
    """--url, --agent-token-file, --agent: whom the server talks to, as which agent."""
    command = click.option(
        "--agent", default=None, help="The agent id, when the token file holds only the token."
    )(command)
    command = click.option(
        "--agent-token-file",
        type=click.Path(dir_okay=False, path_type=Path),
        required=True,
        envvar="VERDICT_AGENT_TOKEN_FILE",
        help="A file holding `AGENT_ID TOKEN` (or `TOKEN` with --agent) [env VERDICT_AGENT_TOKEN_FILE].",
    )(command)
    return click.option(
        "--url", default="http://127.0.0.1:8000", show_default=True, envvar="VERDICT_URL",
        help="The Verdict gateway [env VERDICT_URL].",
    )(command)  # fmt: skip


def _listen_options(command):
    """--http, --host: stdio unless a port is given."""
    command = click.option("--host", default="127.0.0.1", show_default=True, help="The HTTP listen address.")(
        command
    )
    return click.option(
        "--http", "http_port", type=click.IntRange(1, 65535), default=None,
        help="Serve streamable HTTP on this port (path /mcp) instead of stdio.",
    )(command)  # fmt: skip


@click.group("mcp")
def mcp_group() -> None:
    """Guard an agent's MCP tools with Verdict."""


@mcp_group.command("proxy")
@click.option(
    "--upstream",
    required=True,
    help="The MCP server to guard: a command line (stdio), or an http(s) URL (streamable HTTP).",
)
@_agent_options
@click.option("--name", "server_name", default=None,
              help="The server's name in proposals (`action.server`) [the upstream script's or program's name, or the URL's host].")  # fmt: skip
@_listen_options
@click.option("--upstream-env", "upstream_env", multiple=True, metavar="NAME[=VALUE]",
              help="Pass this variable (from this environment, or VALUE) to a command upstream; repeat."
              " Otherwise it gets only PATH, HOME and a few more.")  # fmt: skip
@click.option("--http-token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --http: require `Authorization: Bearer <this file's token>` on every request.")  # fmt: skip
def proxy(
    upstream: str,
    url: str,
    agent_token_file: Path,
    agent: str | None,
    server_name: str | None,
    http_port: int | None,
    host: str,
    upstream_env: tuple[str, ...],
    http_token_file: Path | None,
) -> None:
    """Serve the upstream's tools to an MCP host, deciding every call with Verdict first.

    ALLOW forwards the call once; DENY and a pending approval answer with a tool error the model
    can read; a repeat of an escalated call after approval runs it once. With the gateway
    unreachable nothing is forwarded.
    """
    from gateway.mcp_proxy import default_server_name, serve_proxy

    agent_id, token = read_agent_token(agent_token_file, agent)
    http_token = None
    if http_token_file is not None:
        try:
            http_token = http_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise click.UsageError(f"cannot read {http_token_file}: {exc.strerror}") from None
        if not http_token:
            raise click.UsageError(f"{http_token_file} is empty")
    asyncio.run(
        serve_proxy(
            upstream=upstream,
            upstream_env=environment(upstream_env),
            gateway_url=url,
            agent_id=agent_id,
            token=token,
            server_name=server_name or default_server_name(upstream),
            http=(host, http_port) if http_port is not None else None,
            http_token=http_token,
        )
    )


@mcp_group.command("serve")
@_agent_options
@_listen_options
def serve(url: str, agent_token_file: Path, agent: str | None, http_port: int | None, host: str) -> None:
    """Serve Verdict itself as MCP tools: propose_action, get_action, wait_for_decision
    (bounded, resumable), verify_verdict."""
    from gateway.mcp_tools import serve_verdict_tools

    agent_id, token = read_agent_token(agent_token_file, agent)
    asyncio.run(
        serve_verdict_tools(
            gateway_url=url, agent_id=agent_id, token=token,
            http=(host, http_port) if http_port is not None else None,
        )
    )  # fmt: skip
