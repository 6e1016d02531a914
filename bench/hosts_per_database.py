"""How many gateway hosts one PostgreSQL carries: CPU per 1,000 ALLOW on each side of the wire.

    python bench/hosts_per_database.py                  # 2 workers, 64 connections, 15 s
    python bench/hosts_per_database.py --rounds 3 --duration 10

Starts a gateway on PostgreSQL (in a database of its own, `verdict_hosts_<pid>`, dropped at the
end, so that its commits are counted alone; the server must run on this machine, so that its
processes' CPU time can be read from /proc), seeds it like bench/load.py and drives ALLOW
proposals. Over the measured window it reads the CPU time (user + system) of the gateway's
process group, of the PostgreSQL backends serving it (pg_stat_activity, by application_name),
and of PostgreSQL's shared processes (WAL writer, checkpointer, …, which other users of the
server share too), plus the WAL written (server-wide: an upper bound) and the transactions
committed (this database's). A PostgreSQL host with
as many cores as a gateway host serves `gateway CPU / database CPU` gateway hosts at full load;
docs/scaling.md explains the estimate and its limits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load import PG_URL, drive, machine_facts, seed  # noqa: E402

from tests.integration.process import GatewayProcess  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:  # field 5: the process group
                pids.append(int(entry.name))
    return pids


def postgres_shared_pids() -> list[int]:
    """PostgreSQL's own processes (not client backends): WAL writer, checkpointer, …"""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith("postgres: ") and any(
                word in cmdline for word in ("walwriter", "checkpointer", "background writer", "autovacuum")
            ):
                pids.append(int(entry.name))
    return pids


def database_url(database: str) -> str:
    return PG_URL.rsplit("/", 1)[0] + "/" + database


async def on_server(sql: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def database_counters(database: str) -> tuple[list[int], int, int]:
    conn = await asyncpg.connect(database_url(database))
    try:
        pids = [r["pid"] for r in await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'verdict%'", database
        )]  # fmt: skip
        wal = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
        commits = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    return pids, int(wal), int(commits)


def snapshot(gateway_pgid: int, database: str) -> dict:
    backends, wal, commits = asyncio.run(database_counters(database))
    return {
        "gateway": sum(cpu_seconds(pid) for pid in group_pids(gateway_pgid)),
        "backends": {pid: cpu_seconds(pid) for pid in backends},
        "shared": sum(cpu_seconds(pid) for pid in postgres_shared_pids()),
        "wal": wal,
        "commits": commits,
        "at": time.monotonic(),
    }


def measure(workers: int, concurrency: int, duration: float, warmup: float) -> dict:
    database = f"verdict_hosts_{os.getpid()}"
    asyncio.run(on_server(f'CREATE DATABASE "{database}"'))
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "VERDICT_DATA_DIR": tmp,
            "VERDICT_WORKERS": str(workers),
            "VERDICT_DATABASE_URL": database_url(database),
        }
        server = GatewayProcess(env).start(timeout=60)
        try:
            admin = (Path(tmp) / "admin.token").read_text().strip()
            _, agent = seed(server.url, admin)
            marks: dict[str, dict] = {}

            def sample() -> None:  # the window the load generator counts: after its warm-up
                time.sleep(warmup + 0.5)  # the generator's process start, then its warm-up
                marks["start"] = snapshot(server.proc.pid, database)
                time.sleep(duration - 1.0)
                marks["end"] = snapshot(server.proc.pid, database)

            sampler = threading.Thread(target=sample)
            sampler.start()
            allow = drive(server.url, "POST", "/v1/agents/bot/propose", agent, concurrency, duration, warmup)
            sampler.join()
        finally:
            server.stop()
            asyncio.run(on_server(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    start, end = marks["start"], marks["end"]
    seconds = end["at"] - start["at"]
    allows = allow["rps"] * seconds  # ALLOW answered in the sampled window, at the measured rate
    backends = sum(end["backends"].get(pid, 0.0) - cpu for pid, cpu in start["backends"].items())
    per_thousand = 1000 / allows
    return {
        "allow_per_s": allow["rps"],
        "p99_ms": allow["p99_ms"],
        "gateway_cpu": (end["gateway"] - start["gateway"]) * per_thousand,
        "backend_cpu": backends * per_thousand,
        "shared_cpu": (end["shared"] - start["shared"]) * per_thousand,
        "wal_kib": (end["wal"] - start["wal"]) / 1024 * per_thousand,
        "commits": (end["commits"] - start["commits"]) * per_thousand,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(" ".join(f"{k}={v}" for k, v in machine_facts().items()))
    print(f"PostgreSQL {PG_URL.rsplit('@', 1)[-1]}, {args.workers} workers, {args.concurrency} connections\n")
    print("CPU seconds (user + system) per 1,000 ALLOW, in the measured window:")
    header = "round  ALLOW/s  p99 ms  gateway  db backends  db shared  WAL KiB  commits  gateway/db"
    print(header)
    for n in range(1, args.rounds + 1):
        r = measure(args.workers, args.concurrency, args.duration, args.warmup)
        database = r["backend_cpu"] + r["shared_cpu"]
        print(
            f"{n:>5}  {r['allow_per_s']:>7.0f}  {r['p99_ms']:>6.1f}  {r['gateway_cpu']:>7.3f}  {r['backend_cpu']:>11.3f}"
            f"  {r['shared_cpu']:>9.3f}  {r['wal_kib']:>7.0f}  {r['commits']:>7.1f}  {r['gateway_cpu'] / database:>10.1f}"
        )


if __name__ == "__main__":
    main()
