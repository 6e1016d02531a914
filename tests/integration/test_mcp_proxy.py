"""`verdict mcp proxy` end to end: the mcp SDK's client drives the proxy (stdio and streamable
HTTP), which decides every call with a real `verdict serve` process and forwards the allowed ones
to a real upstream MCP server (tests/mcp_upstream.py), on both backends.

The upstream appends a line per call it runs, so "forwarded once" and "not forwarded" are counts
of what really ran. An approver answers with a real key through the approve route.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import httpx2  # the mcp SDK's HTTP client (its dependency)
import pytest
from eth_account import Account
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ElicitResult

from tests.integration.helpers import bearer, make_world
from tests.integration.process import GatewayProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
POLICY = (ROOT / "examples" / "mcp-tools.yaml").read_text()
UPSTREAM = ROOT / "tests" / "mcp_upstream.py"
SECURITY = Account.from_key("0x" + "66" * 32)  # a well-known test key; never use it for anything real
pytestmark = pytest.mark.slow  # each test starts a gateway, a proxy and an upstream (a few seconds)


@pytest.fixture
async def live(backend, tmp_path) -> AsyncIterator[SimpleNamespace]:
    server = GatewayProcess({**backend.env(), "VERDICT_ACCESS_LOG": "0"}).start()
    try:
        admin = (backend.data_dir / "admin.token").read_text().strip()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            http.app_state = SimpleNamespace(keyring=SimpleNamespace(admin_token=admin))
            world = await make_world(http, policy=POLICY)
            r = await http.post(
                f"/v1/tenants/{world.tenant}/approvers",
                json={"address": SECURITY.address, "roles": ["security"], "name": "Sam Security"},
                headers=bearer(world.tenant_admin),
            )
            assert r.status_code == 201, r.text
            token_file = tmp_path / "agent.token"
            token_file.write_text(f"{world.agent} {world.agent_token}\n")
            calls = tmp_path / "calls.jsonl"
            calls.touch()
            proxy_args = [
                "-m", "gateway.cli", "mcp", "proxy", "--url", server.url,
                "--agent-token-file", str(token_file), "--name", "files",
            ]  # fmt: skip
            yield SimpleNamespace(server=server, http=http, world=world, calls=calls, proxy_args=proxy_args)
    finally:
        server.stop()


def forwarded(live) -> list[dict]:
    return [json.loads(line) for line in live.calls.read_text().splitlines()]


def text(result) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


async def approve(live, action_id: str) -> None:
    r = await live.http.get(
        f"/v1/actions/{action_id}/approval-request", params={"role": "security", "approve": "true"}
    )
    assert r.status_code == 200, r.text
    signature = SECURITY.sign_typed_data(full_message=r.json()).signature.hex()
    r = await live.http.post(
        f"/v1/actions/{action_id}/approve",
        json={"approver_role": "security", "signature": "0x" + signature.removeprefix("0x")},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "allowed"


@contextmanager
def http_server(*args: str) -> Iterator[str]:
    """`python ARGS --http PORT` on a free port; yields its MCP URL once it accepts."""
    port = free_port()
    with tempfile.TemporaryFile(mode="w+") as output:
        proc = subprocess.Popen(
            [sys.executable, *args, "--http", str(port)],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(ROOT),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    output.seek(0)
                    raise RuntimeError(f"{args} exited early:\n{output.read()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@asynccontextmanager
async def connected(live, transport: str, shown: list) -> AsyncIterator[Client]:
    """stdio: the host launches the proxy, which launches the upstream. http: the upstream and the
    proxy each serve streamable HTTP (the proxy's upstream client on a URL). The host takes
    URL-mode elicitations (it would open the console page) and lists them in `shown`."""

    async def elicitation(context, params) -> ElicitResult:
        shown.append(params)
        return ElicitResult(action="accept")

    if transport.startswith("stdio"):
        upstream = ["--upstream", f"{sys.executable} {UPSTREAM} {live.calls}"]
        params = StdioServerParameters(command=sys.executable, args=[*live.proxy_args, *upstream],
                                       cwd=str(ROOT), env={**os.environ})  # fmt: skip
        # stdio-legacy: the initialize handshake (protocol 2025-11-25), as most hosts speak today
        mode = "legacy" if transport == "stdio-legacy" else "auto"
        async with Client(
            params, read_timeout_seconds=60, elicitation_callback=elicitation, mode=mode
        ) as client:
            yield client
        return
    secret = live.calls.with_name("proxy.token")
    secret.write_text("proxy-secret\n")
    with (
        http_server(str(UPSTREAM), str(live.calls)) as upstream_url,
        http_server(*live.proxy_args, "--upstream", upstream_url, "--http-token-file", str(secret)) as url,
    ):
        # without the proxy's bearer token, nothing gets past HTTP
        refused = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=30)
        assert refused.status_code == 401
        http = httpx2.AsyncClient(headers={"Authorization": "Bearer proxy-secret"}, timeout=60)
        transport = streamable_http_client(url, http_client=http)
        async with (
            http,
            Client(transport, read_timeout_seconds=60, elicitation_callback=elicitation) as client,
        ):
            yield client


@pytest.mark.parametrize("transport", ["stdio", "stdio-legacy", "http"])
async def test_the_proxy_forwards_allowed_calls_once_and_holds_the_rest(live, transport) -> None:
    shown: list = []
    async with connected(live, transport, shown) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == {"read_file", "delete_file", "verdict_status"}
        assert tools["read_file"].annotations.read_only_hint is True  # passed through unchanged
        assert tools["delete_file"].input_schema["required"] == ["path"]

        # ALLOW: forwarded once, with the verdict in the result's metadata
        result = await client.call_tool("read_file", {"path": "notes.txt"})
        assert not result.is_error and text(result) == "contents of NOTES.TXT"
        assert forwarded(live) == [{"tool": "read_file", "arguments": {"path": "notes.txt"}}]
        allowed_id = result.meta["verdict"]["action_id"]
        record = (
            await live.http.get(f"/v1/actions/{allowed_id}", headers=bearer(live.world.agent_token))
        ).json()
        assert record["status"] == "allowed" and record["type"] == "mcp_tool_call"
        assert (
            record["action"]["arguments"] == {"path": "notes.txt"} and record["action"]["server"] == "files"
        )
        assert record["signed_verdict"]["signature"] == result.meta["verdict"]["signature"]

        # DENY: a tool error with the reason; nothing forwarded
        result = await client.call_tool("delete_file", {"path": "/", "recursive": True})
        assert result.is_error and "recursive_delete" in text(result)
        assert len(forwarded(live)) == 1
        # a body the gateway refuses at intake (floats are never signed): refused, not forwarded
        result = await client.call_tool("read_file", {"path": "notes.txt", "offset": 1.5})
        assert result.is_error and "refused" in text(result)
        assert len(forwarded(live)) == 1

        # ESCALATE: a pause naming the action; repeats while pending are not forwarded
        result = await client.call_tool("delete_file", {"path": "old.txt"})
        assert result.is_error and "pending" in text(result)
        pending_id = result.meta["verdict"]["action_id"]
        assert pending_id in text(result) and f"/console/actions/{pending_id}" in text(result)
        # the host was asked (once) to show the approvers' page: MCP elicitation, URL mode
        assert [(item.mode, item.url) for item in shown] == [
            ("url", f"{live.server.url}/console/actions/{pending_id}")
        ]
        again = await client.call_tool("delete_file", {"path": "old.txt"})
        assert again.is_error and again.meta["verdict"]["action_id"] == pending_id
        status = await client.call_tool("verdict_status", {"action_id": pending_id})
        assert status.structured_content["status"] == "pending_approval"
        assert len(forwarded(live)) == 1

        await approve(live, pending_id)
        status = await client.call_tool("verdict_status", {"action_id": pending_id})
        assert status.structured_content["status"] == "allowed"
        assert len(forwarded(live)) == 1  # approval alone runs nothing

        # other arguments are not covered by that approval
        other = await client.call_tool("delete_file", {"path": "other.txt"})
        assert other.is_error and other.meta["verdict"]["action_id"] != pending_id
        assert len(forwarded(live)) == 1

        # the same call after approval: forwarded exactly once
        result = await client.call_tool("delete_file", {"path": "old.txt"})
        assert not result.is_error and text(result) == "deleted old.txt"
        assert result.meta["verdict"]["action_id"] == pending_id
        assert forwarded(live)[1:] == [
            {"tool": "delete_file", "arguments": {"path": "old.txt", "recursive": False}}
        ]
        repeat = await client.call_tool("delete_file", {"path": "old.txt"})
        assert repeat.is_error and repeat.meta["verdict"]["action_id"] not in (pending_id, allowed_id)
        assert len(forwarded(live)) == 2  # a new action, pending again

        # the gateway down: fail closed
        live.server.stop()
        result = await client.call_tool("read_file", {"path": "notes.txt"})
        assert result.is_error and "unavailable" in text(result)
        assert len(forwarded(live)) == 2
