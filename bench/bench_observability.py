"""What metrics and traces cost on the propose path: ALLOW/s and latency, alternating rounds.

    python bench/bench_observability.py                      # PostgreSQL, 2 workers, 3 rounds
    python bench/bench_observability.py --baseline-tree /tmp/verdict-main --rounds 2

Configurations, each a real `verdict serve` driven by bench/load.py's generator:
- `metrics`: the default (Prometheus metrics on, traces off: no OTEL_* variable);
- `metrics+traces`: every request traced (sampler always_on) and exported over OTLP/HTTP to a
  sink in this process that answers 200, so export costs what it would with a collector;
- `traces-1%`: the same with 1 % of traces sampled (parentbased_traceidratio 0.01), as one
  would run it in production;
- `baseline` (with --baseline-tree): the same gateway from a checkout without this
  instrumentation (e.g. `git worktree add /tmp/verdict-main <commit before it>`).
Rounds alternate the configurations so that the machine's drift falls on all of them.

`--hooks` instead times, in one process, what the metrics add to each proposal (the request's
counter and histogram, the decision, the policy evaluation's histogram, with traces off: the
null spans), in prometheus_client's multiprocess mode as `verdict serve` runs it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load import PG_URL, drive, machine_facts, seed  # noqa: E402

from tests.integration.process import GatewayProcess  # noqa: E402


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that accepts every export and keeps nothing."""

    spans_bytes = 0

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        _Sink.spans_bytes += len(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def start_sink() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def run_one(name: str, args: argparse.Namespace, sink: str) -> dict:
    schema = f"verdict_bench_{secrets.token_hex(4)}" if args.backend == "postgresql" else None
    with tempfile.TemporaryDirectory() as tmp:
        env = {"VERDICT_DATA_DIR": tmp, "VERDICT_WORKERS": str(args.workers), "VERDICT_ACCESS_LOG": "1"}
        if schema:
            env |= {"VERDICT_DATABASE_URL": PG_URL, "VERDICT_DATABASE_SCHEMA": schema}
        if name == "metrics+traces":
            env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": sink, "OTEL_TRACES_SAMPLER": "always_on"}
        elif name == "traces-1%":
            env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": sink, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                    "OTEL_TRACES_SAMPLER_ARG": "0.01"}  # fmt: skip
        cwd = Path(args.baseline_tree) if name == "baseline" else ROOT
        server = GatewayProcess(env, cwd=cwd).start(timeout=90)
        try:
            admin = (Path(tmp) / "admin.token").read_text().strip()
            _, agent = seed(server.url, admin)
            path = "/v1/agents/bot/propose"
            result = drive(server.url, "POST", path, agent, args.concurrency, args.duration, args.warmup)
        finally:
            server.stop()
            if schema:
                _drop(schema)
    return result


def _drop(schema: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()

    asyncio.run(drop())


HOOKS = """
import os, sys, time
from gateway import metrics, telemetry
observer = metrics.HttpObserver()
route = "/v1/agents/{agent_id}/propose"

def per_proposal():
    observer.observe("POST", route, 201, 0.012)
    metrics.count_decision("bench", "ALLOW", per_tenant=False)
    metrics.POLICY_EVALUATION.observe(0.0001)
    for name in ("authenticate", "evaluate", "sign", "commit"):
        with telemetry.span(name):
            pass

for _ in range(2000):
    per_proposal()
n = 50000
began = time.process_time()
for _ in range(n):
    per_proposal()
print(f"{(time.process_time() - began) / n * 1e6:.1f}")
"""


def time_hooks() -> None:
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": tmp}
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        runs = [
            float(subprocess.run([sys.executable, "-c", HOOKS], env=env, cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout)
            for _ in range(3)
        ]  # fmt: skip
    print(f"metrics hooks per proposal (multiprocess mode, traces off): median {statistics.median(runs):.1f} µs CPU"
          f" (runs: {', '.join(f'{r:.1f}' for r in runs)})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-tree", default=None, help="A checkout without metrics and traces.")
    parser.add_argument("--hooks", action="store_true", help="Time the per-proposal metric hooks only.")
    args = parser.parse_args()
    if args.hooks:
        print("machine: " + " · ".join(f"{k} {v}" for k, v in machine_facts().items()))
        time_hooks()
        return
    names = (["baseline"] if args.baseline_tree else []) + ["metrics", "metrics+traces", "traces-1%"]
    sink = start_sink()
    print("machine: " + " · ".join(f"{k} {v}" for k, v in machine_facts().items()))
    print(f"{args.backend}, {args.workers} workers, {args.concurrency} connections, {args.duration:.0f} s per"
          f" run after {args.warmup:.0f} s warm-up, {args.rounds} alternating rounds\n")  # fmt: skip
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for round_number in range(1, args.rounds + 1):
        for name in names:
            r = run_one(name, args, sink)
            runs[name].append(r)
            print(f"round {round_number} {name:<15} {r['rps']:>7.0f} ALLOW/s  p50 {r['p50_ms']:>5.1f} ms"
                  f"  p99 {r['p99_ms']:>5.1f} ms  errors {r['errors']}", flush=True)  # fmt: skip
    print()
    reference = "baseline" if args.baseline_tree else "metrics"
    ref_rps = statistics.median(r["rps"] for r in runs[reference])
    for name in names:
        rps = statistics.median(r["rps"] for r in runs[name])
        p99 = statistics.median(r["p99_ms"] for r in runs[name])
        print(f"median {name:<15} {rps:>7.0f} ALLOW/s ({rps / ref_rps:.2f}x {reference})  p99 {p99:.1f} ms")
    print(f"\nspans exported to the sink: {_Sink.spans_bytes} bytes of OTLP protobuf")


if __name__ == "__main__":
    main()
