"""Soak: a long run at half the peak rate with approvals, expiries and checkpoints under way.

    python bench/soak.py                         # 10 minutes at half the peak measured first
    python bench/soak.py --minutes 2 --window 20 --rate 600

One gateway (`verdict serve`, PostgreSQL schema of its own, 2 workers, checkpoints every 2 s and
the access log on: the defaults) with the reference policy, except that an escalated payment's
approval window is one minute, so that expiries happen during the run. Then:

1. Peak: 10 s closed loop of ALLOW proposals (bench/load.py's generator, 48 connections);
   the soak rate is half of it, unless `--rate` is given.
2. Soak: an open-loop generator in its own process (bench/open_loop.py) offers that rate for
   `--minutes`: 97 % ALLOW, 2 % ESCALATE (7,800.00: one CFO approval), 1 % DENY (blocked vendor).
   Meanwhile this process acts as the CFO: it lists pending actions, approves a quarter of those
   it sees and rejects another quarter, each answer signed with the CFO's wallet key over the
   typed data the gateway hands out (as tests/integration/agent_world.py does); the other half
   expire after their minute, by the gateway's sweeper.
3. Each window (a minute by default): answered/s, p50/p99/p99.9 (latency from the due time), errors,
   approvals, expiries, the resident memory of each worker (VmRSS of the server's child
   processes) and the schema's size on disk.

The summary checks the targets: resident memory of each worker grows no more than 10 % from the
end of the first window (warm-up) to the end; and it gives the database's size per 100,000
actions (all tables of the schema, indexes and TOAST included: `pg_total_relation_size`), over
the whole run and over the soak alone.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import PG_URL, drive, machine_facts, seed
from open_loop import drop_schema, proposal_requests, start_generator

from gateway.demo import DEMO_POLICY
from tests.integration.agent_world import CFO
from tests.integration.helpers import bearer
from tests.integration.process import GatewayProcess

SOAK_POLICY = DEMO_POLICY.replace("timeout_minutes: 60", "timeout_minutes: 1")
assert SOAK_POLICY != DEMO_POLICY, "the reference policy no longer sets the CFO's window"
PROPOSE = "/v1/agents/bot/propose"
MEMORY_GROWTH_TARGET = 0.10


# ---- what the gateway holds ------------------------------------------------------------------


def worker_pids(server_pid: int) -> list[int]:
    """The server's child processes (granian's workers), by pid."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == server_pid:
            children.append(int(stat.parent.name))
    return sorted(children)


def resident_mib(pid: int) -> float:
    """VmRSS of a process in MiB (NaN when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def largest_tables(conn: asyncpg.Connection, schema: str, count: int = 6) -> list[tuple[str, int]]:
    """The schema's `count` largest tables (indexes and TOAST included), in bytes."""
    rows = await conn.fetch(
        "SELECT c.relname AS name, pg_total_relation_size(c.oid) AS size FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'"
        " ORDER BY size DESC LIMIT $2",
        schema,
        count,
    )
    return [(row["name"], int(row["size"])) for row in rows]


async def database_facts(conn: asyncpg.Connection, schema: str) -> dict[str, Any]:
    """The schema's size on disk and its actions by status."""
    size = await conn.fetchval(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
        schema,
    )
    rows = await conn.fetch(f'SELECT status, count(*) AS n FROM "{schema}".actions GROUP BY status')
    statuses = {row["status"]: row["n"] for row in rows}
    return {"bytes": int(size), "actions": sum(statuses.values()), "statuses": statuses}


# ---- the CFO ---------------------------------------------------------------------------------


class Approver:
    """Answers pending escalations as the CFO: approves one in four actions it sees, rejects
    one in four, leaves the rest to expire; at most `per_second` answers a second."""

    def __init__(self, http: httpx.AsyncClient, tenant_admin: str, per_second: float) -> None:
        self.http = http
        self.tenant_admin = tenant_admin
        self.per_second = per_second
        self.seen: set[str] = set()
        self.answers: dict[str, int] = {}  # "approve 200", "reject 409", "error", …

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.round()
            except httpx.HTTPError:
                self.answers["error"] = self.answers.get("error", 0) + 1
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

    async def round(self) -> None:
        r = await self.http.get(
            "/v1/actions",
            params={"status": "pending_approval", "role": "cfo", "limit": 50},
            headers=bearer(self.tenant_admin),
        )
        r.raise_for_status()
        budget = int(self.per_second)
        for record in r.json()["actions"]:
            action_id = record["action_id"]
            if action_id in self.seen:
                continue
            self.seen.add(action_id)
            turn = len(self.seen) % 4
            if turn < 2 and budget > 0:
                budget -= 1
                await self.answer(action_id, approve=turn == 0)

    async def answer(self, action_id: str, approve: bool) -> None:
        params = {"role": "cfo", "approve": "true" if approve else "false"}
        r = await self.http.get(f"/v1/actions/{action_id}/approval-request", params=params)
        if r.status_code == 200:
            signature = "0x" + CFO.sign_typed_data(full_message=r.json()).signature.hex().removeprefix("0x")
            r = await self.http.post(
                f"/v1/actions/{action_id}/{'approve' if approve else 'reject'}",
                json={"approver_role": "cfo", "signature": signature},
            )
        key = f"{'approve' if approve else 'reject'} {r.status_code}"
        self.answers[key] = self.answers.get(key, 0) + 1


# ---- the soak --------------------------------------------------------------------------------


def seed_soak(url: str, data_dir: Path) -> tuple[str, str]:
    admin = (data_dir / "admin.token").read_text().strip()
    tenant_admin, agent = seed(url, admin, policy=SOAK_POLICY)
    r = httpx.post(
        f"{url}/v1/tenants/bench/approvers",
        json={"address": CFO.address, "roles": ["cfo"], "name": "Carla CFO"},
        headers=bearer(tenant_admin),
    )
    r.raise_for_status()
    return tenant_admin, agent


def print_header() -> str:
    header = (
        f"{'window':>6} {'end s':>6} | {'answered/s':>10} {'ALLOW/s':>7} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'p99.9 ms':>8} {'errors':>6} | {'approved':>8} {'rejected':>8} {'expired':>7} |"
        f" {'RSS MiB per worker':>18} | {'DB MiB':>7} {'actions':>8}"
    )
    print(f"{header}\n{'-' * len(header)}", flush=True)
    return header


def print_window(row: dict[str, Any]) -> None:
    w, db = row["window"], row["db"]
    statuses = db["statuses"]
    rss = " ".join(f"{m:>6.1f}" for m in row["rss"])
    print(
        f"{w['window'] + 1:>6} {row['elapsed']:>6.0f} | {w['rps']:>10.0f} {w['allow_rps']:>7.0f}"
        f" {w['p50_ms']:>7.1f} {w['p99_ms']:>7.1f} {w['p999_ms']:>8.1f} {w['errors']:>6} |"
        f" {row['approved']:>8} {row['rejected']:>8} {statuses.get('expired', 0):>7} | {rss:>18} |"
        f" {db['bytes'] / 2**20:>7.1f} {db['actions']:>8}",
        flush=True,
    )


async def soak(server: GatewayProcess, schema: str, tenant_admin: str, spec: dict, args: Any) -> dict:
    """Runs the open-loop generator for the soak while answering escalations and sampling
    memory and the database at each window; returns everything measured."""
    conn = await asyncpg.connect(PG_URL)
    pids = worker_pids(server.proc.pid)
    before = {"rss": [resident_mib(p) for p in pids], "db": await database_facts(conn, schema)}
    process, pipe = start_generator(spec)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        approver = Approver(http, tenant_admin, args.approvals_per_second)
        answering = asyncio.ensure_future(approver.run())
        print_header()
        try:
            while "total" not in (message := await asyncio.to_thread(pipe.recv)):
                row = {
                    "window": message,
                    "elapsed": time.monotonic() - started,
                    "rss": [resident_mib(p) for p in pids],
                    "db": await database_facts(conn, schema),
                    "approved": approver.answers.get("approve 200", 0),
                    "rejected": approver.answers.get("reject 200", 0),
                }
                rows.append(row)
                print_window(row)
            tables = await largest_tables(conn, schema)
        finally:
            answering.cancel()
            process.join(timeout=10)
            await conn.close()
    return {
        "pids": pids,
        "pids_after": worker_pids(server.proc.pid),
        "before": before,
        "rows": rows,
        "total": message["total"],
        "answers": approver.answers,
        "tables": tables,
    }


def growth(before: float, after: float) -> float:
    return after / before - 1


def summarize(result: dict, peak: float | None, rate: float, args: Any) -> None:
    rows, total = result["rows"], result["total"]
    print(
        f"\nsummary ({args.minutes:g} min at {rate:.0f}/s offered"
        + (f", half of {peak:.0f}/s peak)" if peak else ")")
    )
    rates = [r["window"]["rps"] for r in rows]
    p99s = [r["window"]["p99_ms"] for r in rows]
    print(
        f"  throughput per window: min {min(rates):.0f}, median {statistics.median(rates):.0f}, max {max(rates):.0f}"
        f" answered/s; overall {total['rps']:.0f}/s, errors {total['errors']} of {total['offered']} offered"
        f" ({', '.join(f'{k} {v}' for k, v in sorted(total['outcomes'].items()) if v)})"
    )
    print(
        f"  p99 per window: min {min(p99s):.1f}, median {statistics.median(p99s):.1f}, max {max(p99s):.1f} ms;"
        f" overall p50 {total['p50_ms']:.1f}, p99 {total['p99_ms']:.1f}, p99.9 {total['p999_ms']:.1f} ms"
    )
    print(
        f"  CFO answers: {dict(sorted(result['answers'].items()))}; actions by status at the end: "
        f"{dict(sorted(rows[-1]['db']['statuses'].items()))}"
    )
    warm = rows[0]["rss"]
    for n, pid in enumerate(result["pids"]):
        fresh, start = result["fresh"][n], result["before"]["rss"][n]
        after_warmup, end = warm[n], rows[-1]["rss"][n]
        grew = growth(after_warmup, end)
        verdict = "met" if grew <= MEMORY_GROWTH_TARGET else "missed"
        print(
            f"  worker {pid} RSS: {fresh:.1f} MiB started, {start:.1f} before the soak,"
            f" {after_warmup:.1f} after warm-up (window 1), {end:.1f} at the end: {grew:+.1%} after"
            f" warm-up (target ≤ +10 %: {verdict})"
        )
    if result["pids_after"] != result["pids"]:
        print(f"  WORKERS CHANGED during the run: {result['pids']} → {result['pids_after']}")
    first, last = result["before"]["db"], rows[-1]["db"]
    per_total = last["bytes"] / last["actions"] * 100_000
    per_soak = (last["bytes"] - first["bytes"]) / max(1, last["actions"] - first["actions"]) * 100_000
    print(
        f"  database: {last['bytes'] / 2**20:.0f} MiB for {last['actions']} actions: {per_total / 2**20:.0f} MiB"
        f" per 100,000 actions over the whole run, {per_soak / 2**20:.0f} MiB per 100,000 during the soak"
    )
    print(
        "  largest tables (MiB per 100,000 actions): "
        + ", ".join(
            f"{name} {size / last['actions'] * 100_000 / 2**20:.0f}" for name, size in result["tables"]
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, help="proposals/s offered (default: half the measured peak)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds per reported window")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=96, help="the soak generator's connection pool")
    parser.add_argument("--peak-connections", type=int, default=48)
    parser.add_argument("--approvals-per-second", type=float, default=4.0)
    args = parser.parse_args()
    print("machine: " + " · ".join(f"{k} {v}" for k, v in machine_facts().items()))
    schema = f"verdict_bench_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "VERDICT_DATA_DIR": tmp,
            "VERDICT_WORKERS": str(args.workers),
            "VERDICT_DATABASE_URL": PG_URL,
            "VERDICT_DATABASE_SCHEMA": schema,
        }
        server = GatewayProcess(env).start(timeout=60)
        try:
            tenant_admin, agent = seed_soak(server.url, Path(tmp))
            fresh = [resident_mib(pid) for pid in worker_pids(server.proc.pid)]
            peak = None
            if args.rate is None:
                peak = drive(server.url, "POST", PROPOSE, agent, args.peak_connections, 10, 2)["rps"]
            rate = args.rate or peak / 2
            print(
                (
                    f"peak: {peak:.0f} ALLOW/s closed loop, {args.peak_connections} connections, 10 s\n"
                    if peak
                    else ""
                )
                + f"soak: {rate:.0f} proposals/s offered, open loop over {args.connections} connections for"
                f" {args.minutes:g} min; postgresql, {args.workers} workers; gateway, database, generator and"
                " approver on this machine\n",
                flush=True,
            )
            spec = {
                "host": "127.0.0.1",
                "port": server.port,
                "requests": proposal_requests("127.0.0.1", PROPOSE, agent, escalate_every=50, deny_every=100),
                "rate": rate,
                "duration": args.minutes * 60,
                "warmup": 0.0,
                "connections": args.connections,
                "window": args.window,
            }
            result = asyncio.run(soak(server, schema, tenant_admin, spec, args)) | {"fresh": fresh}
        finally:
            server.stop()
            drop_schema(schema)
    summarize(result, peak, rate, args)


if __name__ == "__main__":
    main()
