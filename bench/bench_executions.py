"""Executions benchmark: executions/s end to end and the latency from the execute request to
`succeeded`, against the reference bank answering in 5 ms, with PostgreSQL.

    python bench/bench_executions.py                          # 1 and 2 workers, 250 and 500/s offered
    python bench/bench_executions.py --workers 2 --rate 500 --duration 10

Starts the reference bank (tests/bank.py) in its own process, then per configuration a real
gateway (`verdict serve`, fresh PostgreSQL schema), seeds a tenant, policy, agent and the
`bank_api` rail over HTTP, proposes the allowed actions first (not timed), then offers execute
requests at a fixed rate (open loop) for `--duration` seconds. Latency is measured from the moment
the request was sent to the execution's `finished_at` (the commit of `execution.succeeded`, same
clock); throughput is the executions that succeeded per second over the run. The baseline, in
the same run: the bank's own POST /payments latency from this process. After each run it checks
the bank holds exactly one payment per execution.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load import PG_URL, machine_facts, read_response  # noqa: E402
from tests.bank import API_KEY  # noqa: E402
from tests.integration.helpers import bearer, pay  # noqa: E402
from tests.integration.process import GatewayProcess  # noqa: E402
from tests.integration.test_crash import seed  # noqa: E402

TARGET_RATE, TARGET_P99_MS = 500, 250
# The actions are proposed before the timed run: their verdicts must outlive it.
BENCH_POLICY = """\
schema: verdict.policy/v1
default: DENY
verdict_ttl_seconds: 3600
rules:
  - id: allow-all
    decision: ALLOW
    match: {}
"""


def start_bank(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.bank", "--latency", str(latency)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    return proc, proc.stdout.readline().strip()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def bank_baseline(url: str, count: int = 300) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        for n in range(count):
            body = {"amount": "1.00", "currency": "USDC", "creditor": {"name": "x"}, "reference": f"base_{n}",
                    "end_to_end_id": "e"}  # fmt: skip
            started = time.perf_counter()
            r = await http.post(
                "/payments", json=body, headers={"Idempotency-Key": f"base-{secrets.token_hex(6)}"}
            )
            latencies.append(time.perf_counter() - started)
            assert r.status_code == 201
    return latencies


async def run_config(bank_url: str, workers: int, rate: int, duration: float) -> dict:
    schema = f"bench_exec_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {"VERDICT_DATA_DIR": tmp, "VERDICT_DATABASE_URL": PG_URL, "VERDICT_DATABASE_SCHEMA": schema,
               "VERDICT_WORKERS": str(workers), "VERDICT_ACCESS_LOG": "0", "VERDICT_RAIL_ALLOW_PRIVATE": "1",
               "VERDICT_EXECUTION_POLL_SECONDS": "0.05"}  # fmt: skip
        server = GatewayProcess(env).start(timeout=60)
        try:
            admin = (Path(tmp) / "admin.token").read_text().strip()
            world = await seed(server.url, admin)
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
            async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
                r = await http.put(f"/v1/tenants/{world.tenant}/rails/bank_api", headers=bearer(world.tenant_admin),
                                   json={"kind": "bank_api", "config": {"base_url": bank_url, "api_key": API_KEY}})  # fmt: skip
                assert r.status_code == 200, r.text
                r = await http.post(f"/v1/tenants/{world.tenant}/policies", content=BENCH_POLICY.encode(),
                                    headers={**bearer(world.tenant_admin), "Content-Type": "application/yaml"})  # fmt: skip
                assert r.status_code == 201, r.text
                count = int(rate * duration)
                proposing = time.perf_counter()
                gate = asyncio.Semaphore(32)

                async def propose(n: int) -> str:
                    async with gate:
                        r = await http.post(f"/v1/agents/{world.agent}/propose", json=pay(f"{1 + n % 4000}.00"),
                                            headers=bearer(world.agent_token))  # fmt: skip
                        return r.json()["action_id"]

                action_ids = await asyncio.gather(*(propose(n) for n in range(count)))
                print(
                    f"  ({count} allowed actions proposed in {time.perf_counter() - proposing:.1f} s)",
                    flush=True,
                )
                host, port = server.url.removeprefix("http://").split(":")
                cpu_before = gateway_cpu_seconds(server.proc.pid)
                ctx = multiprocessing.get_context("spawn")
                with ctx.Pool(1) as pool:  # the generator in its own process: not this one's CPU
                    sent, refused = pool.apply(
                        _offer, ((host, int(port), world.agent_token, action_ids, rate),)
                    )
            finished = await _wait_finished(schema, set(sent))
            cpu = gateway_cpu_seconds(server.proc.pid) - cpu_before
        finally:
            server.stop()
    done = {e: row for e, row in finished.items() if row[2] == "succeeded"}
    latencies = [row[1] - sent[e] for e, row in done.items()]
    queued = [row[0] - sent[e] for e, row in done.items()]
    print(f"  request → committed p50 {1000 * percentile(queued, 0.5):.1f} ms, p99 {1000 * percentile(queued, 0.99):.1f} ms;"
          f" refused {refused}; gateway CPU {1000 * cpu / max(1, len(sent)):.2f} ms per execution", flush=True)  # fmt: skip
    span = max(row[1] for row in done.values()) - min(sent.values()) if done else float("nan")
    return {"workers": workers, "offered": rate, "executions": len(sent), "succeeded": len(done),
            "per_second": len(done) / span, "p50_ms": 1000 * percentile(latencies, 0.5),
            "p99_ms": 1000 * percentile(latencies, 0.99), "max_ms": 1000 * max(latencies, default=float("nan"))}  # fmt: skip


def gateway_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of the gateway's processes: the server and its workers. Per
    execution, it tells what a change costs even on a machine busy with other work."""
    total = 0.0
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = path.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if path.parent.name == str(pid) or fields[1] == str(pid):  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def _wait_finished(schema: str, ids: set[str]) -> dict[str, tuple[float, float, str]]:
    """Each execution's (created, finished, status) from the database once all have ended:
    one query per poll, so that watching does not load the gateway being measured."""
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        deadline = time.monotonic() + 120
        while True:
            rows = await conn.fetch("SELECT id, status, created_at, finished_at FROM executions")
            ended = {r["id"]: r for r in rows if r["id"] in ids and r["finished_at"] is not None}
            if len(ended) == len(ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        return {e: (_unix(r["created_at"]), _unix(r["finished_at"]), r["status"]) for e, r in ended.items()}
    finally:
        await conn.close()


_EXECUTION_ID = re.compile(rb'"execution_id":"(exe_[^"]+)"')


def _offer(args: tuple) -> tuple[dict[str, float], int]:
    """Open loop, in a spawned process: execute requests at `rate` per second over a pool of
    keep-alive raw-socket connections; each request's time is when it was due to be sent, so
    waiting for a free connection counts. Returns {execution_id: due (unix time)} and the
    number of requests not answered 202."""
    host, port, token, action_ids, rate = args

    async def run() -> tuple[dict[str, float], int]:
        free: asyncio.Queue = asyncio.Queue()
        for _ in range(128):
            free.put_nowait(await asyncio.open_connection(host, port))
        sent: dict[str, float] = {}
        refused = 0

        async def one(action_id: str, due: float) -> None:
            nonlocal refused
            reader, writer = await free.get()
            writer.write(f"POST /v1/actions/{action_id}/execute HTTP/1.1\r\nHost: {host}\r\n"
                         f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                         "Content-Length: 2\r\n\r\n{}".encode())  # fmt: skip
            head, body = await read_response(reader)
            free.put_nowait((reader, writer))
            found = _EXECUTION_ID.search(body)
            if head[9:12] == b"202" and found:
                sent[found.group(1).decode()] = due
            else:
                refused += 1

        tasks = []
        begin, wall = time.perf_counter(), time.time()
        for n, action_id in enumerate(action_ids):
            delay = begin + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(action_id, wall + n / rate)))
        await asyncio.gather(*tasks)
        return sent, refused

    return asyncio.run(run())


def _unix(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--rate", type=int, nargs="*", default=[250, 500])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--bank-latency", type=float, default=0.005)
    args = parser.parse_args()
    bank, bank_url = start_bank(args.bank_latency)
    try:
        print(" · ".join(f"{k} {v}" for k, v in machine_facts().items()))
        print(
            f"reference bank at {bank_url}, answering in {1000 * args.bank_latency:g} ms; PostgreSQL {PG_URL}"
        )
        base = asyncio.run(bank_baseline(bank_url))
        print(f"baseline: bank POST /payments from here p50 {1000 * statistics.median(base):.1f} ms,"
              f" p99 {1000 * percentile(base, 0.99):.1f} ms")  # fmt: skip
        print(f"{'workers':>7} {'offered/s':>9} {'executions':>10} {'succeeded':>9} {'exec/s':>8} "
              f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")  # fmt: skip
        for workers in args.workers:
            for rate in args.rate:
                row = asyncio.run(run_config(bank_url, workers, rate, args.duration))
                print(f"{row['workers']:>7} {row['offered']:>9} {row['executions']:>10} {row['succeeded']:>9} "
                      f"{row['per_second']:>8.1f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['max_ms']:>8.1f}",
                      flush=True)  # fmt: skip
        print(f"targets: >= {TARGET_RATE} executions/s, p99 <= {TARGET_P99_MS} ms (issue 12)")
    finally:
        bank.terminate()
        bank.wait()
        os.environ.pop("VERDICT_RAIL_ALLOW_PRIVATE", None)


if __name__ == "__main__":
    main()
