"""Load benchmark: proposals/s and latency for ALLOW (with signed verdicts) against a running gateway.

    python bench/load.py                       # SQLite and PostgreSQL, 1 and 2 workers
    python bench/load.py --backend postgresql --workers 2 --duration 15 --concurrency 64

Starts a real gateway (`verdict serve`) per configuration in a temporary data dir (and a fresh
PostgreSQL schema), seeds a tenant, a policy and an agent over HTTP, then drives it from a
separate load-generator process: closed loop, keep-alive HTTP/1.1 connections, warm-up
excluded. Each configuration also measures `GET /health` as a baseline (the ceiling of the
HTTP stack plus the load generator on this machine). After the run it checks that every
answered ALLOW carries a verdict and that the tenant's log is an unbroken chain.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.helpers import EXAMPLE_POLICY  # noqa: E402
from tests.integration.process import GatewayProcess  # noqa: E402

PG_URL = os.environ.get("VERDICT_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def machine_facts() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }


# ---- load generator (runs in its own process) -------------------------------------------


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP/1.1 answer on a keep-alive connection: its head (status line and headers) and
    its body (Content-Length framed, as the gateway answers)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return head, await reader.readexactly(length)


async def _connection(
    host: str,
    port: int,
    requests: list[bytes],
    stop_at: float,
    warm_until: float,
    latencies: list[float],
    counts: dict[str, int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = 0
    try:
        while time.perf_counter() < stop_at:
            request = requests[i % len(requests)]
            i += 1
            started = time.perf_counter()
            writer.write(request)
            head, body = await read_response(reader)
            elapsed = time.perf_counter() - started
            if started < warm_until:
                continue
            status = head[9:12]
            if status in (b"200", b"201") and (b'"decision":"ALLOW"' in body or b'"status":"ok"' in body):
                latencies.append(elapsed)
                counts["ok"] += 1
            else:
                counts["other"] += 1
    finally:
        writer.close()


def _generate(args: tuple) -> dict:
    host, port, method, path, token, concurrency, duration, warmup = args
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    requests = []
    for n in range(4096):
        if method == "GET":
            requests.append(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            continue
        body = json.dumps(
            {
                "action": {
                    "type": "pay_invoice",
                    "invoice_id": f"inv_{n}",
                    "amount": f"{100 + n % 4000}.25",
                    "asset": "USDC",
                    "vendor": "acme-supplies",
                }
            }
        ).encode()
        requests.append(
            (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
    latencies: list[float] = []
    counts = {"ok": 0, "other": 0}

    async def run() -> None:
        now = time.perf_counter()
        warm_until, stop_at = now + warmup, now + warmup + duration
        await asyncio.gather(
            *(
                _connection(
                    host, port, requests[i::concurrency] or requests, stop_at, warm_until, latencies, counts
                )
                for i in range(concurrency)
            )
        )

    asyncio.run(run())
    return {"latencies": latencies, **counts, "duration": duration}


def drive(
    url: str, method: str, path: str, token: str, concurrency: int, duration: float, warmup: float
) -> dict:
    host, port = url.removeprefix("http://").split(":")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        result = pool.apply(
            _generate, ((host, int(port), method, path, token, concurrency, duration, warmup),)
        )
    lat = sorted(result["latencies"])
    q = statistics.quantiles(lat, n=100) if len(lat) > 100 else [float("nan")] * 99
    return {
        "rps": result["ok"] / duration,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "ok": result["ok"],
        "errors": result["other"],
    }


# ---- one configuration ---------------------------------------------------------------------


def seed(url: str, admin: str, policy: str = EXAMPLE_POLICY) -> tuple[str, str]:
    """Tenant `bench` with `policy`, agent `bot` and a limit no benchmark reaches; returns the
    tenant admin's token and the agent's."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}) as http:
        http.post("/v1/tenants", json={"id": "bench", "name": "Bench"}).raise_for_status()
        tenant_admin = http.post("/v1/tenants/bench/api-keys", json={"role": "tenant_admin"}).json()["token"]
        auth = {"Authorization": f"Bearer {tenant_admin}"}
        agent = http.post("/v1/tenants/bench/agents", json={"id": "bot"}, headers=auth).json()["token"]
        http.post(
            "/v1/tenants/bench/policies",
            content=policy.encode(),
            headers={**auth, "Content-Type": "application/yaml"},
        ).raise_for_status()
        # the benchmark measures throughput, not the default limit of 100 proposals per minute
        http.put(
            "/v1/tenants/bench/rate-limits", json={"propose_per_minute": 1_000_000}, headers=auth
        ).raise_for_status()
    return tenant_admin, agent


def check_log(url: str, token: str) -> int:
    from audit import verify_chain

    raw: list[bytes] = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        while True:
            body = http.get("/v1/tenants/bench/audit/entries", params={"start": len(raw)}).json()
            raw += [base64.b64decode(e["entry"]) for e in body["entries"]]
            if len(raw) >= body["size"]:
                break
    verify_chain(raw, tenant="bench")
    return len(raw)


def run_config(backend: str, workers: int, concurrency: int, duration: float, warmup: float) -> dict:
    schema = f"verdict_bench_{secrets.token_hex(4)}" if backend == "postgresql" else None
    with tempfile.TemporaryDirectory() as tmp:
        env = {"VERDICT_DATA_DIR": tmp, "VERDICT_WORKERS": str(workers)}
        if backend == "postgresql":
            env |= {"VERDICT_DATABASE_URL": PG_URL, "VERDICT_DATABASE_SCHEMA": schema}
        server = GatewayProcess(env).start(timeout=60)
        try:
            admin = (Path(tmp) / "admin.token").read_text().strip()
            tenant_admin, agent = seed(server.url, admin)
            baseline = drive(server.url, "GET", "/health", "", concurrency, min(duration, 5), 1)
            allow = drive(server.url, "POST", "/v1/agents/bot/propose", agent, concurrency, duration, warmup)
            entries = check_log(server.url, tenant_admin)
        finally:
            server.stop()
            if schema:
                import asyncpg

                async def drop() -> None:
                    conn = await asyncpg.connect(PG_URL)
                    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                    await conn.close()

                asyncio.run(drop())
    return {
        "backend": backend,
        "workers": workers,
        "concurrency": concurrency,
        "health": baseline,
        "allow": allow,
        "log_entries": entries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--concurrency", type=int, nargs="*", default=[32, 64])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    facts = machine_facts()
    print("machine: " + " · ".join(f"{k} {v}" for k, v in facts.items()))
    print(
        f"load: closed loop over keep-alive connections, {args.duration:.0f} s after {args.warmup:.0f} s"
        " warm-up; gateway, database and load generator on this machine\n"
    )
    header = (
        f"{'backend':<11} {'workers':>7} {'conns':>5} | {'ALLOW/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'errors':>6} | {'health/s':>8} {'p99 ms':>7} | {'log entries':>11}"
    )
    print(header)
    print("-" * len(header))
    results = []
    for backend in backends:
        for workers in args.workers:
            for conns in args.concurrency:
                r = run_config(backend, workers, conns, args.duration, args.warmup)
                results.append(r)
                a, h = r["allow"], r["health"]
                print(
                    f"{backend:<11} {workers:>7} {conns:>5} | {a['rps']:>8.0f} {a['p50_ms']:>7.1f} "
                    f"{a['p99_ms']:>7.1f} {a['errors']:>6} | {h['rps']:>8.0f} {h['p99_ms']:>7.1f} | "
                    f"{r['log_entries']:>11} chain ok",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps({"machine": facts, "results": results}, indent=2))


if __name__ == "__main__":
    main()
