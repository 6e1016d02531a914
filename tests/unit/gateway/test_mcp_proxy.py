"""The MCP gateway's pure parts: the action built for a tool call, names, and the import wall."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from mcp.types import Tool, ToolAnnotations

from crypto.canonical import action_hash
from gateway.cli_mcp import read_agent_token
from gateway.mcp_proxy import default_server_name, tool_action


def tool(**hints) -> Tool:
    return Tool(
        name="t", input_schema={"type": "object"}, annotations=ToolAnnotations(**hints) if hints else None
    )


def test_annotations_carry_the_mcp_defaults_when_the_server_sent_none() -> None:
    action = tool_action("files", "t", {"a": 1}, tool())
    assert action == {
        "type": "mcp_tool_call",
        "server": "files",
        "tool": "t",
        "arguments": {"a": 1},
        "annotations": {
            "readOnlyHint": False,
            "destructiveHint": True,
            "idempotentHint": False,
            "openWorldHint": True,
        },
    }
    assert (
        tool_action("files", "t", {}, None)["annotations"] == action["annotations"]
    )  # unknown tool: worst case


def test_hints_that_were_sent_win() -> None:
    read_only = tool_action("f", "t", {}, tool(read_only_hint=True))["annotations"]
    assert read_only["readOnlyHint"] is True and read_only["destructiveHint"] is False
    additive = tool_action("f", "t", {}, tool(destructive_hint=False, open_world_hint=False))["annotations"]
    assert additive == {
        "readOnlyHint": False,
        "destructiveHint": False,
        "idempotentHint": False,
        "openWorldHint": False,
    }


def test_the_hash_binds_the_arguments() -> None:
    one = action_hash(tool_action("f", "t", {"path": "a"}, None))
    assert one == action_hash(tool_action("f", "t", {"path": "a"}, None))
    assert one != action_hash(tool_action("f", "t", {"path": "b"}, None))
    assert one != action_hash(tool_action("g", "t", {"path": "a"}, None))


def test_default_server_names() -> None:
    assert default_server_name("python servers/files.py --root /tmp") == "files"
    assert default_server_name("npx -y @modelcontextprotocol/server-github") == "server-github"
    assert default_server_name("https://mcp.example.com/mcp") == "mcp.example.com"


def test_agent_token_files(tmp_path) -> None:
    both = tmp_path / "both"
    both.write_text("ap-bot vt_secret\n")
    assert read_agent_token(both, None) == ("ap-bot", "vt_secret")
    only = tmp_path / "only"
    only.write_text("vt_secret")
    assert read_agent_token(only, "bot-2") == ("bot-2", "vt_secret")
    with pytest.raises(click.UsageError, match="--agent"):
        read_agent_token(only, None)
    with pytest.raises(click.UsageError, match="cannot read"):
        read_agent_token(tmp_path / "missing", None)


def test_the_gateway_server_never_imports_the_mcp_sdk() -> None:
    code = "import sys, gateway.cli, gateway.app; print(sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'mcp_types')))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_upstream_environment(monkeypatch) -> None:
    from gateway.cli_mcp import environment

    monkeypatch.setenv("GITHUB_TOKEN", "ghp_x")
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    assert environment(("GITHUB_TOKEN", "MODE=ro", "NOT_SET_HERE", "EMPTY=")) == {
        "GITHUB_TOKEN": "ghp_x",
        "MODE": "ro",
        "EMPTY": "",
    }
