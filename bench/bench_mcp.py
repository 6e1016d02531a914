"""MCP gateway benchmark: the latency `verdict mcp proxy` adds to an allowed tool call.

    python bench/bench_mcp.py                    # SQLite, 300 calls per series
    python bench/bench_mcp.py --calls 1000 --rounds 5

Starts a real gateway (`verdict serve`, SQLite) with a tenant on examples/mcp-tools.yaml, then
measures three series, one call at a time, alternating in `--rounds` so that drift on a shared
machine hits all three:

1. propose: the gateway's own answer to the proposal the proxy makes (AsyncVerdictClient).
2. upstream: `read_file` on the upstream MCP server (tests/mcp_upstream.py), straight over stdio.
3. proxied: `read_file` through `verdict mcp proxy` (stdio) to the same upstream: propose, verify
   the signed verdict, forward, answer.

The proxy's own cost is proxied - upstream - propose (p50 against p50; the target is <= 5 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load import machine_facts  # noqa: E402

from gateway.client_async import AsyncVerdictClient  # noqa: E402
from gateway.mcp_proxy import tool_action  # noqa: E402
from tests.integration.process import GatewayProcess  # noqa: E402

POLICY = (ROOT / "examples" / "mcp-tools.yaml").read_text()
UPSTREAM = ROOT / "tests" / "mcp_upstream.py"


def seed(url: str, admin: str) -> tuple[str, str]:
    """A tenant on the MCP policy and an agent; returns (agent id, token)."""
    auth = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=url, timeout=30) as http:
        http.post("/v1/tenants", json={"id": "bench", "name": "bench"}, headers=auth).raise_for_status()
        r = http.post("/v1/tenants/bench/api-keys", json={"role": "tenant_admin"}, headers=auth)
        tenant_admin = {"Authorization": f"Bearer {r.raise_for_status().json()['token']}"}
        r = http.post("/v1/tenants/bench/agents", json={"id": "bot"}, headers=tenant_admin)
        token = r.raise_for_status().json()["token"]
        http.post(
            "/v1/tenants/bench/policies",
            content=POLICY.encode(),
            headers={**tenant_admin, "Content-Type": "application/yaml"},
        ).raise_for_status()
        http.put(
            "/v1/tenants/bench/rate-limits", json={"propose_per_minute": 1_000_000}, headers=tenant_admin
        ).raise_for_status()
    return "bot", token


async def timed(call, count: int) -> list[float]:
    samples = []
    for index in range(count):
        started = time.perf_counter()
        await call(index)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(url: str, agent: str, token: str, calls: int, rounds: int, warmup: int) -> dict:
    token_file = Path(tempfile.mkdtemp()) / "agent.token"
    token_file.write_text(f"{agent} {token}")
    upstream = StdioServerParameters(command=sys.executable, args=[str(UPSTREAM)])
    proxy = StdioServerParameters(
        command=sys.executable,
        args=["-m", "gateway.cli", "mcp", "proxy", "--url", url, "--agent-token-file", str(token_file),
              "--name", "files", "--upstream", f"{sys.executable} {UPSTREAM}"],
        cwd=str(ROOT),
    )  # fmt: skip
    series: dict[str, list[float]] = {"propose": [], "upstream": [], "proxied": []}
    async with (
        AsyncVerdictClient(url, token) as verdict,
        Client(upstream) as direct,
        Client(proxy, read_timeout_seconds=60) as proxied,
    ):
        tools = {tool.name: tool for tool in (await direct.list_tools()).tools}

        async def propose(index: int) -> None:
            action = tool_action("files", "read_file", {"path": f"f{index}.txt"}, tools["read_file"])
            assert (await verdict.propose(agent, action))["decision"] == "ALLOW"

        async def call_direct(index: int) -> None:
            assert not (await direct.call_tool("read_file", {"path": f"f{index}.txt"})).is_error

        async def call_proxied(index: int) -> None:
            assert not (await proxied.call_tool("read_file", {"path": f"f{index}.txt"})).is_error

        await proxied.list_tools()
        for call in (propose, call_direct, call_proxied):
            await timed(call, warmup)
        for _ in range(rounds):
            series["propose"] += await timed(propose, calls // rounds)
            series["upstream"] += await timed(call_direct, calls // rounds)
            series["proxied"] += await timed(call_proxied, calls // rounds)
    return series


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=300, help="calls per series")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        server = GatewayProcess({"VERDICT_DATA_DIR": data_dir, "VERDICT_ACCESS_LOG": "0"}).start()
        try:
            agent, token = seed(server.url, (Path(data_dir) / "admin.token").read_text().strip())
            series = asyncio.run(measure(server.url, agent, token, args.calls, args.rounds, args.warmup))
        finally:
            server.stop()
    for key, value in machine_facts().items():
        print(f"{key:>8}: {value}")
    print(f"{'series':<10} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
    for name, samples in series.items():
        print(
            f"{name:<10} {len(samples):>6} {percentile(samples, 0.5):>8.2f} "
            f"{percentile(samples, 0.95):>8.2f} {statistics.fmean(samples):>8.2f}"
        )
    added = percentile(series["proxied"], 0.5) - percentile(series["upstream"], 0.5)
    own = added - percentile(series["propose"], 0.5)
    print(f"the proxy adds {added:.2f} ms at p50 to a tool call; {own:.2f} ms over the gateway's propose")


if __name__ == "__main__":
    main()
