"""The verifiable log at scale: integrating a large log into its Merkle tree, proofs against it,
and re-checking it whole.

    python bench/bench_audit.py [--backend postgresql|sqlite] [--entries 1000000] [--proofs 1000]

Builds a tenant's log of `--entries` real chained entries (each an `action.proposed`-sized entry,
written straight into a fresh PostgreSQL schema or SQLite file, as the ledger would have), then
measures with the gateway's own code (`gateway.services.audit`):

- integration: every entry into the stored tree, checkpoints signed (entries/s);
- inclusion and consistency proofs on the full-size tree, as the API serves them: size checks,
  O(log n) stored hashes read from the database, the proof built (p50/p99 ms);
- `verdict audit check`: re-verifying the whole log from the database (seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from audit import parse_vkey, verify_consistency, verify_inclusion  # noqa: E402
from audit.checkpoint import verify_checkpoint  # noqa: E402
from audit.entry import encode_entry, leaf_hash  # noqa: E402
from bench.load import PG_URL, machine_facts  # noqa: E402
from gateway.auth import Principal  # noqa: E402
from gateway.schemas import CreateTenant  # noqa: E402
from gateway.services.audit import AuditService  # noqa: E402
from gateway.services.tenants import TenantService  # noqa: E402
from gateway.storage import open_database  # noqa: E402

TENANT = "bench"
ADMIN = Principal("bench", "admin", None, None)
CHUNK = 50_000
STAGES = 8


def entry_data(n: int) -> dict:
    return {
        "agent": "ap-bot",
        "action": {
            "type": "pay_invoice",
            "invoice_id": f"inv_{n}",
            "amount": f"{n % 10000}.00",
            "vendor": "acme",
        },
        "action_hash": "0x" + secrets.token_hex(32),
        "decision": "ALLOW",
        "status": "allowed",
        "reason": "allow-rest",
        "matched_rules": ["allow-rest"],
        "policy_version": 1,
    }


async def build_log(db, entries: int) -> float:
    """Append `entries` chained entries after the tenant's first; returns seconds taken."""
    began = time.perf_counter()
    async with db.read() as conn:
        head = await conn.fetchrow("SELECT size, head FROM audit_heads WHERE tenant_id = ?", TENANT)
    size, prev = int(head["size"]), head["head"]
    while size < entries:
        rows = []
        for seq in range(size, min(entries, size + CHUNK)):
            raw = encode_entry(
                seq=seq,
                tenant=TENANT,
                type="action.proposed",
                time="2026-11-30T12:00:00Z",
                action_id=f"act_{seq:08d}",
                actor="agent:ap-bot",
                data=entry_data(seq),
                prev=prev,
            )
            rows.append((TENANT, seq, raw))
            prev = leaf_hash(raw).hex()
        async with db.transaction() as conn:
            await conn.executemany("INSERT INTO audit_entries (tenant_id, seq, entry) VALUES (?, ?, ?)", rows)
            size += len(rows)
            await conn.execute(
                "UPDATE audit_heads SET size = ?, head = ? WHERE tenant_id = ?", size, prev, TENANT
            )
        print(f"\r  building the log: {size:,} entries", end="", flush=True)
    print()
    return time.perf_counter() - began


def quantiles(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100)
    return q[49] * 1000, q[98] * 1000


async def run(backend: str, entries: int, proofs: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    schema = f"verdict_bench_{secrets.token_hex(4)}" if backend == "postgresql" else None
    db = open_database(PG_URL if backend == "postgresql" else None, data_dir=tmp, schema=schema)
    await db.open()
    try:
        await TenantService(db, None).create_tenant(ADMIN, CreateTenant(id=TENANT, name="bench"))
        key = Ed25519PrivateKey.generate()
        audit = AuditService(db, key, "bench.example/verdict")
        verifier = parse_vkey(audit.vkey(TENANT))
        built = integrate_s = 0.0
        for stage in range(1, STAGES + 1):  # the log grows in stages, checkpointed after each
            built += await build_log(db, entries * stage // STAGES)
            began = time.perf_counter()
            checkpoint = await audit.checkpoint(TENANT)
            integrate_s += time.perf_counter() - began
        tree = verify_checkpoint(checkpoint.note, verifier)
        assert tree.size == entries

        async with db.read() as conn:
            sample = random.Random(7).sample(range(entries), proofs)
            leaves = {}
            for index in sample:
                row = await conn.fetchrow(
                    "SELECT entry FROM audit_entries WHERE tenant_id = ? AND seq = ?", TENANT, index
                )
                leaves[index] = leaf_hash(bytes(row["entry"]))
        inclusion = []
        for index in sample:
            t0 = time.perf_counter()
            proof = await audit.inclusion_proof(TENANT, index, entries)
            inclusion.append(time.perf_counter() - t0)
            verify_inclusion(index, entries, leaves[index], proof, tree.root_hash)
        # consistency from sizes that have a checkpoint (as an auditor holding older ones would ask)
        async with db.read() as conn:
            rows = await conn.fetch("SELECT size, note FROM audit_checkpoints WHERE tenant_id = ?", TENANT)
        olds = [verify_checkpoint(r["note"], verifier) for r in rows if int(r["size"]) < entries]
        consistency = []
        rng = random.Random(8)
        for _ in range(proofs):
            old = rng.choice(olds)
            t0 = time.perf_counter()
            proof = await audit.consistency_proof(TENANT, old.size, entries)
            consistency.append(time.perf_counter() - t0)
            verify_consistency(old.size, entries, old.root_hash, tree.root_hash, proof)
        began = time.perf_counter()
        report = await audit.check_log(TENANT)
        check_s = time.perf_counter() - began
        assert report.size == entries

        print(f"  log of {entries:,} entries built in {built:.1f} s (not measured: bench setup)")
        print(f"  integration (tree + {report.checkpoints} checkpoints): {integrate_s:.1f} s,"
              f" {entries / integrate_s:,.0f} entries/s")  # fmt: skip
        p50, p99 = quantiles(inclusion)
        print(
            f"  inclusion proof at size {entries:,} ({proofs} random leaves): p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        )
        p50, p99 = quantiles(consistency)
        print(
            f"  consistency proof to size {entries:,} ({proofs} from checkpointed sizes): p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        )
        print(f"  verdict audit check (whole log, every checkpoint and stored hash): {check_s:.1f} s,"
              f" {entries / check_s:,.0f} entries/s")  # fmt: skip
    finally:
        if schema:
            async with db.transaction() as conn:
                await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=1000)
    args = parser.parse_args()
    print("machine: " + " · ".join(f"{k} {v}" for k, v in machine_facts().items()))
    print(f"{args.backend}:")
    asyncio.run(run(args.backend, args.entries, args.proofs))


if __name__ == "__main__":
    main()
