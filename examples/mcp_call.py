"""Call one tool on an MCP server over streamable HTTP and print the result (needs the `mcp` SDK:
`pip install 'verdict-gateway[mcp]'`). For trying `verdict mcp proxy --http PORT` from a shell:

    python examples/mcp_call.py http://127.0.0.1:8765/mcp read_file '{"path": "notes.txt"}'
"""

from __future__ import annotations

import asyncio
import json
import sys

from mcp import Client


async def call(url: str, tool: str, arguments: dict) -> int:
    async with Client(url) as client:
        result = await client.call_tool(tool, arguments)
    for block in result.content:
        print(block.text if block.type == "text" else block)
    if result.meta and "verdict" in result.meta:
        print("verdict:", json.dumps(result.meta["verdict"]))
    return 1 if result.is_error else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(asyncio.run(call(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))))
