"""Audit append throughput: one transaction per entry vs the group-commit chain writer.

    python bench/bench_append.py [--backend sqlite|postgresql|both] [--appenders 64] [--seconds 5]

Runs the real `gateway.ledger` against a fresh SQLite file or PostgreSQL schema. The
baseline appends each unit in its own transaction (what a naive hash chain does: lock
head, insert, commit); the chain writer batches every waiting unit into one transaction.
Each unit is one action row plus two audit entries, as an ALLOW proposal writes.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load import PG_URL, machine_facts  # noqa: E402
from gateway.auth import Principal  # noqa: E402
from gateway.ledger import ChainWriter, EntryDraft, Unit, write_units  # noqa: E402
from gateway.schemas import CreateTenant  # noqa: E402
from gateway.services.tenants import TenantService  # noqa: E402
from gateway.storage import Insert, open_database  # noqa: E402

ADMIN = Principal("bench", "admin", None, None)
AGENT_COLUMNS = ("tenant_id", "id", "name", "created_at")


def make_unit(tenant: str, n: int) -> Unit:
    data = {"action": {"type": "pay_invoice", "amount": f"{n}.00", "vendor": "acme"}, "decision": "ALLOW"}
    agent = f"a{n}-{secrets.token_hex(4)}"
    return Unit(
        [
            EntryDraft("action.proposed", "agent:x", data, f"act_{n}"),
            EntryDraft("verdict.issued", "gateway", {"n": n}),
        ],
        inserts=lambda seqs: [
            Insert("agents", AGENT_COLUMNS, (tenant, agent, "bench", "2026-01-01T00:00:00Z"))
        ],
    )


async def run(backend: str, mode: str, appenders: int, seconds: float) -> dict:
    tmp = tempfile.mkdtemp()
    schema = f"verdict_bench_{secrets.token_hex(4)}" if backend == "postgresql" else None
    db = open_database(PG_URL if backend == "postgresql" else None, data_dir=Path(tmp), schema=schema)
    await db.open()
    try:
        tenant = "bench"
        await TenantService(db, None).create_tenant(ADMIN, CreateTenant(id=tenant, name="bench"))
        writer = ChainWriter(db, tenant) if mode == "group" else None
        latencies: list[float] = []
        stop = time.perf_counter() + seconds
        counter = iter(range(10**9))

        async def naive(unit: Unit) -> None:
            async with db.transaction() as conn:
                await write_units(conn, tenant, [unit], lock=db.for_update())

        async def appender() -> None:
            while time.perf_counter() < stop:
                unit = make_unit(tenant, next(counter))
                started = time.perf_counter()
                if writer is not None:
                    await writer.append(unit)
                else:
                    await naive(unit)
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(appender() for _ in range(appenders)))
        elapsed = time.perf_counter() - began
        if writer is not None:
            await writer.close()
        q = statistics.quantiles(latencies, n=100)
        return {
            "units_per_s": len(latencies) / elapsed,
            "entries_per_s": 2 * len(latencies) / elapsed,
            "p50_ms": q[49] * 1000,
            "p99_ms": q[98] * 1000,
        }
    finally:
        if schema:
            async with db.transaction() as conn:
                await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--appenders", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print("machine: " + " · ".join(f"{k} {v}" for k, v in machine_facts().items()))
    print(
        f"{args.appenders} concurrent appenders, {args.seconds:.0f} s each; a unit = 1 row + 2 chained entries\n"
    )
    header = f"{'backend':<11} {'mode':<28} {'units/s':>8} {'entries/s':>9} {'p50 ms':>7} {'p99 ms':>7}"
    print(header)
    print("-" * len(header))
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        for mode, label in (("naive", "one transaction per unit"), ("group", "group commit (chain writer)")):
            r = asyncio.run(run(backend, mode, args.appenders, args.seconds))
            print(
                f"{backend:<11} {label:<28} {r['units_per_s']:>8.0f} {r['entries_per_s']:>9.0f} "
                f"{r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
