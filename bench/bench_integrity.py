"""What the gateway pays to watch its own logs (`gateway.services.log_integrity`, `log_scan`).

    python bench/bench_integrity.py [--backend postgresql|sqlite] [--entries 100000] [--steps 100] [--new 100]

Builds a tenant's log of `--entries` real chained entries (as `bench/bench_audit.py` does), checkpoints
it, then measures with the gateway's own code:

- per checkpoint: one integration step of `--new` new entries, with the checks before signing (the
  signed tree head, and a sample of earlier entries re-read and proved against the signed root),
  against the same step with a sample of 0 — the baseline, alternated with it in the same run;
- the whole-log scan: the start-up scan (`verify_logs`: small pages, yielding between slices) and
  `verdict audit check` (`check_log`: large pages), in seconds per 100,000 entries.
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

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from bench.bench_audit import ADMIN, TENANT, build_log  # noqa: E402
from bench.load import PG_URL, machine_facts  # noqa: E402
from gateway.schemas import CreateTenant  # noqa: E402
from gateway.services.audit import AuditService  # noqa: E402
from gateway.services.log_integrity import SAMPLE_SIZE  # noqa: E402
from gateway.services.tenants import TenantService  # noqa: E402
from gateway.storage import open_database  # noqa: E402


def quantiles(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100)
    return q[49] * 1000, q[98] * 1000


async def run(backend: str, entries: int, steps: int, new: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    schema = f"verdict_bench_{secrets.token_hex(4)}" if backend == "postgresql" else None
    db = open_database(PG_URL if backend == "postgresql" else None, data_dir=tmp, schema=schema)
    await db.open()
    try:
        await TenantService(db, None).create_tenant(ADMIN, CreateTenant(id=TENANT, name="bench"))
        audit = AuditService(db, Ed25519PrivateKey.generate(), "bench.example/verdict")
        await build_log(db, entries)
        await audit.checkpoint(TENANT)

        timings: dict[int, list[float]] = {SAMPLE_SIZE: [], 0: []}
        size = entries
        for step in range(2 * steps):
            sample = (SAMPLE_SIZE, 0)[step % 2]  # alternated: both see the same machine load
            size += new
            await build_log(db, size)
            audit.sample_size = sample
            began = time.perf_counter()
            await audit.checkpoint(TENANT)
            timings[sample].append(time.perf_counter() - began)
        assert not audit.integrity_errors
        print(f"  log of {size:,} entries, checkpointed every {new} new entries")
        with_p50, with_p99 = quantiles(timings[SAMPLE_SIZE])
        base_p50, base_p99 = quantiles(timings[0])
        print(
            f"  checkpoint step, checks before signing with a sample of {SAMPLE_SIZE}:"
            f" p50 {with_p50:.2f} ms, p99 {with_p99:.2f} ms ({steps} steps)"
        )
        print(f"  the same step with a sample of 0 (baseline): p50 {base_p50:.2f} ms, p99 {base_p99:.2f} ms")
        print(f"  the sample's cost per checkpoint: p50 {with_p50 - base_p50:+.2f} ms", flush=True)

        began = time.perf_counter()
        await audit.verify_logs()
        scan_s = time.perf_counter() - began
        assert not audit.integrity_errors
        began = time.perf_counter()
        await audit.check_log(TENANT)
        check_s = time.perf_counter() - began

        per = 100_000 / size
        print(
            f"  start-up scan (verify_logs): {scan_s:.1f} s, {scan_s * per:.1f} s per 100k entries",
            flush=True,
        )
        print(f"  verdict audit check (check_log): {check_s:.1f} s, {check_s * per:.1f} s per 100k entries")
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
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--new", type=int, default=100)
    args = parser.parse_args()
    print("machine: " + " · ".join(f"{k} {v}" for k, v in machine_facts().items()))
    print(f"{args.backend}:")
    asyncio.run(run(args.backend, args.entries, args.steps, args.new))


if __name__ == "__main__":
    main()
