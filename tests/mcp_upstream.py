"""A small MCP server for the MCP gateway's tests: one read-only and one destructive tool.

Run as `python tests/mcp_upstream.py CALLS_FILE` (stdio), or with `--http PORT` (streamable HTTP
at http://127.0.0.1:PORT/mcp). Every call that reaches a tool appends one JSON line
`{"tool", "arguments"}` to CALLS_FILE, so a test can count what was forwarded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mcp.server import MCPServer
from mcp.types import ToolAnnotations

CALLS = Path(sys.argv[1]) if len(sys.argv) > 1 else None
server = MCPServer("files")


def _record(tool: str, arguments: dict) -> None:
    if CALLS is not None:
        with CALLS.open("a", encoding="utf-8") as calls:
            calls.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def read_file(path: str) -> str:
    """Read a file (pretend): returns its name in capitals."""
    _record("read_file", {"path": path})
    return f"contents of {path.upper()}"


@server.tool(annotations=ToolAnnotations(destructive_hint=True))
def delete_file(path: str, recursive: bool = False) -> str:
    """Delete a file (pretend)."""
    _record("delete_file", {"path": path, "recursive": recursive})
    return f"deleted {path}"


if __name__ == "__main__":
    if "--http" in sys.argv:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[sys.argv.index("--http") + 1]))
    else:
        server.run("stdio")
