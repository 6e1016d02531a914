"""Many tenants: ALLOW/s when the load is spread over N tenants, against one tenant, same server.

    python bench/bench_tenants.py                         # PostgreSQL, 2 workers, 48 connections, 100 tenants
    python bench/bench_tenants.py --tenants 48 --rounds 5 --duration 10

One gateway (`verdict serve`, fresh data dir, and on PostgreSQL a database of its own, created
and dropped here, so that its transaction count is the gateway's alone) with one tenant `bench` and
N more tenants, each with the reference policy and an agent. wrk (Lua) drives it closed loop,
alternating rounds: every request to the one tenant, then each request to the next of the N
tenants in turn. Printed per round: ALLOW/s, p50/p99, and, on PostgreSQL, the database's
transactions per ALLOW (`pg_stat_database.xact_commit`): a group commit carries fewer
proposals when they are spread over more chains. The issue's target: 100 tenants ≥ 0.9x one
tenant (the median of the rounds' ratios, each round measuring both).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cerbos import run_wrk
from load import PG_URL, machine_facts, seed

from tests.integration.helpers import EXAMPLE_POLICY
from tests.integration.process import GatewayProcess

TARGET_RATIO = 0.9  # N tenants' ALLOW/s over one tenant's (issue 16)

LUA = """\
local tokens = {%(tokens)s}
local paths = {%(paths)s}
local n = 0
request = function()
  n = n + 1
  local i = n %% #tokens + 1
  local body = string.format(
    '{"action":{"type":"pay_invoice","invoice_id":"inv_%%d","amount":"%%d.25","asset":"USDC","vendor":"acme-supplies"}}',
    n, 100 + n %% 4000)
  return wrk.format("POST", paths[i], {["Authorization"] = "Bearer " .. tokens[i],
                                       ["Content-Type"] = "application/json"}, body)
end
"""


def seed_tenants(url: str, admin: str, count: int) -> list[tuple[str, str]]:
    """`count` tenants `t1`… with the reference policy, a high rate limit and agent `bot`;
    returns (agent path, token) per tenant."""
    agents = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=30) as http:
        for n in range(1, count + 1):
            tenant = f"t{n}"
            http.post("/v1/tenants", json={"id": tenant, "name": tenant}).raise_for_status()
            key = http.post(f"/v1/tenants/{tenant}/api-keys", json={"role": "tenant_admin"}).json()["token"]
            auth = {"Authorization": f"Bearer {key}"}
            token = http.post(f"/v1/tenants/{tenant}/agents", json={"id": "bot"}, headers=auth).json()[
                "token"
            ]
            http.post(
                f"/v1/tenants/{tenant}/policies",
                content=EXAMPLE_POLICY.encode(),
                headers={**auth, "Content-Type": "application/yaml"},
            ).raise_for_status()
            http.put(
                f"/v1/tenants/{tenant}/rate-limits", json={"propose_per_minute": 1_000_000}, headers=auth
            ).raise_for_status()
            agents.append(("/v1/agents/bot/propose", token))
    return agents


def lua_for(agents: list[tuple[str, str]]) -> str:
    return LUA % {
        "tokens": ", ".join(f'"{token}"' for _, token in agents),
        "paths": ", ".join(f'"{path}"' for path, _ in agents),
    }


def on_database(url: str, sql: str) -> object:
    import asyncpg

    async def run() -> object:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def commits(database: str | None) -> int | None:
    """The committed transactions of `database` so far (PostgreSQL), or None."""
    if database is None:
        return None
    return int(on_database(PG_URL, f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{database}'"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--connections", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("machine: " + " · ".join(f"{k} {v}" for k, v in machine_facts().items()))
    print(
        f"load: wrk {args.threads} threads, {args.connections} connections, closed loop, {args.duration:g} s"
        f" per measurement; {args.backend}, {args.workers} workers; gateway, database and wrk on this machine\n"
    )
    database = f"verdict_bench_{os.getpid()}" if args.backend == "postgresql" else None
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {"VERDICT_DATA_DIR": tmp, "VERDICT_WORKERS": str(args.workers)}
        if database is not None:
            on_database(PG_URL, f'CREATE DATABASE "{database}"')
            env["VERDICT_DATABASE_URL"] = PG_URL.rsplit("/", 1)[0] + f"/{database}"
        server = GatewayProcess(env).start(timeout=60)
        try:
            admin = (Path(tmp) / "admin.token").read_text().strip()
            _, one_token = seed(server.url, admin)
            scripts = {
                "1 tenant": lua_for([("/v1/agents/bot/propose", one_token)]),
                f"{args.tenants} tenants": lua_for(seed_tenants(server.url, admin, args.tenants)),
            }
            for script in scripts.values():  # warm every tenant's caches and chain writer
                run_wrk(server.url, script, args.threads, args.connections, min(3.0, args.duration))
            header = f"{'round':>5} {'load':>12} | {'ALLOW/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} | {'xacts/ALLOW':>11}"
            print(f"{header}\n{'-' * len(header)}")
            for n in range(1, args.rounds + 1):
                names = list(scripts) if n % 2 else list(reversed(scripts))
                rates = {}
                for name in names:
                    before = commits(database)
                    got = run_wrk(server.url, scripts[name], args.threads, args.connections, args.duration)
                    after = commits(database)
                    rates[name] = got["rps"]
                    per = (
                        (after - before) / (got["rps"] * args.duration)
                        if before is not None
                        else float("nan")
                    )
                    print(
                        f"{n:>5} {name:>12} | {got['rps']:>8.0f} {got['p50_ms']:>7.1f} {got['p99_ms']:>7.1f}"
                        f" {got['non_2xx'] + got['socket_errors']:>6} | {per:>11.2f}",
                        flush=True,
                    )
                one, many = rates.values() if names[0] == "1 tenant" else reversed(rates.values())
                ratios.append(many / one)
        finally:
            server.stop()
            if database is not None:
                on_database(PG_URL, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    median = statistics.median(ratios)
    print(
        f"\n{args.tenants} tenants / 1 tenant per round: {', '.join(f'{r:.2f}' for r in ratios)};"
        f" median {median:.2f}x (target ≥ {TARGET_RATIO}x: {'met' if median >= TARGET_RATIO else 'missed'})"
    )


if __name__ == "__main__":
    main()
