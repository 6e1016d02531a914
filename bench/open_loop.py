"""Open-loop latency of proposals: requests sent at fixed times, latency counted from that time.

    python bench/open_loop.py                                  # 500, 1000, 1500, 2000 ALLOW/s offered
    python bench/open_loop.py --rates 2000 --duration 30 --rounds 3 --connections 128

A closed-loop generator (bench/load.py) sends the next request only when the last one came back,
so a slow answer also delays the requests that would have been sent meanwhile, and their wait
is never measured (coordinated omission). Here request i is due at start + i/rate whatever
happened before; a pool of keep-alive HTTP/1.1 connections (raw sockets, its own process, uvloop)
takes due requests in order, and a request's latency runs from its due time to the last byte of
its answer: time spent queued in the generator because every connection was busy counts.

One gateway (`verdict serve`, PostgreSQL schema of its own, 2 workers by default, checkpoints
and access log on as configured by default) with the reference policy; each round offers every
rate in turn (ascending, then descending in the next round), after a warm-up. Printed per rate:
achieved ALLOW/s, p50/p99/p99.9/max, errors (non-201 answers, broken connections, requests still
unanswered 5 s after the end). The issue's target: p99 ≤ 25 ms at 2,000 ALLOW/s offered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import PG_URL, machine_facts, read_response, seed

from tests.integration.process import GatewayProcess

DRAIN_SECONDS = 5.0  # after the last due time, how long answers are still awaited


# ---- requests ------------------------------------------------------------------------------


def proposal_requests(
    host: str, path: str, token: str, count: int = 4096, escalate_every: int = 0, deny_every: int = 0
) -> list[bytes]:
    """`count` raw HTTP/1.1 proposals of payments: ALLOW under the reference policy, except every
    `escalate_every`-th (7,800.00: the CFO must approve) and every `deny_every`-th (a blocked
    vendor); 0: none of those."""
    requests = []
    for n in range(count):
        amount, vendor = f"{100 + n % 4000}.25", "acme-supplies"
        if escalate_every and n % escalate_every == escalate_every - 1:
            amount = "7800.00"
        elif deny_every and n % deny_every == deny_every - 2:
            vendor = "evil-corp"
        action = {"type": "pay_invoice", "invoice_id": f"inv_{n}", "amount": amount, "asset": "USDC"}
        body = json.dumps({"action": {**action, "vendor": vendor}}).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


# ---- statistics ----------------------------------------------------------------------------


def quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted values (NaN when there are none)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Window:
    """Answers received in one stretch of time: latencies of 201s, and counts by outcome."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.outcomes: Counter[str] = Counter()
        self.after_end: Counter[str] = Counter()  # answers that came after the last due time

    def add(self, latency: float, outcome: str, after_end: bool = False) -> None:
        """Counts an answer; one `after_end` counts in the latencies but not in the rates."""
        self.outcomes[outcome] += 1
        self.after_end[outcome] += after_end
        if outcome in ("ALLOW", "ESCALATE", "DENY"):
            self.latencies.append(latency)

    def summary(self, seconds: float) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        in_time = self.outcomes - self.after_end
        answered = sum(n for k, n in in_time.items() if k in ("ALLOW", "ESCALATE", "DENY"))
        return {
            "seconds": seconds,
            "rps": answered / seconds,
            "allow_rps": in_time["ALLOW"] / seconds,
            "p50_ms": quantile(ordered, 0.50) * 1000,
            "p99_ms": quantile(ordered, 0.99) * 1000,
            "p999_ms": quantile(ordered, 0.999) * 1000,
            "max_ms": (ordered[-1] if ordered else float("nan")) * 1000,
            "outcomes": dict(self.outcomes),
            "errors": sum(n for k, n in self.outcomes.items() if k not in ("ALLOW", "ESCALATE", "DENY")),
        }


def outcome_of(head: bytes, body: bytes) -> str:
    """`ALLOW`/`ESCALATE`/`DENY` for a 201, else the status code (`503`…)."""
    status = head[9:12].decode()
    if status != "201":
        return status
    for decision in ("ALLOW", "ESCALATE", "DENY"):
        if b'"decision":"' + decision.encode() + b'"' in body:
            return decision
    return "201?"


# ---- the generator (runs in its own process) -----------------------------------------------


class OpenLoop:
    """Sends `requests` round robin at `rate`/s for `warmup` + `duration` s over `connections`
    keep-alive connections; answers are counted in windows of `window` s by their arrival
    (warm-up excluded), each window's summary sent on `pipe` when it closes."""

    def __init__(self, spec: dict[str, Any], pipe: Any) -> None:
        self.spec = spec
        self.pipe = pipe
        self.queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        self.total = Window()
        self.windows: dict[int, Window] = {}
        self.start = self.measure_from = self.stop_at = 0.0
        self.offered = 0

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        self.start = time.perf_counter() + 0.2  # connections open first
        self.measure_from = self.start + spec["warmup"]
        self.stop_at = self.measure_from + spec["duration"]
        connections = [asyncio.ensure_future(self.connection()) for _ in range(spec["connections"])]
        reporter = asyncio.ensure_future(self.report_windows())
        await self.dispatch()
        for _ in connections:
            self.queue.put_nowait(None)
        _, unfinished = await asyncio.wait(connections, timeout=DRAIN_SECONDS)
        for task in unfinished:
            task.cancel()
        reporter.cancel()
        self.total.outcomes["unanswered"] += self.offered - sum(self.total.outcomes.values())
        self.send_window(self.last_window(), spec["window"])
        result = self.total.summary(spec["duration"])
        result["offered"] = self.offered
        return result

    async def dispatch(self) -> None:
        """Puts each request on the queue at its due time (or at once when the loop is late)."""
        requests, rate = self.spec["requests"], self.spec["rate"]
        sent = 0
        while (now := time.perf_counter()) < self.stop_at:
            due = max(0, math.floor((now - self.start) * rate) + 1)
            while sent < due:
                at = self.start + sent / rate
                if at >= self.stop_at:
                    break
                self.queue.put_nowait((at, requests[sent % len(requests)]))
                self.offered += at >= self.measure_from
                sent += 1
            await asyncio.sleep(0.0005)

    async def connection(self) -> None:
        host, port = self.spec["host"], self.spec["port"]
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (item := await self.queue.get()) is not None:
                due, request = item
                try:
                    writer.write(request)
                    head, body = await read_response(reader)
                    outcome = outcome_of(head, body)
                    if b"\r\nconnection: close" in head.lower():  # the server will close it: reopen
                        writer.close()
                        reader, writer = await asyncio.open_connection(host, port)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    outcome = "broken"
                self.record(due, time.perf_counter(), outcome)
        finally:
            writer.close()

    def record(self, due: float, done: float, outcome: str) -> None:
        if due < self.measure_from:
            return
        latency, after_end = done - due, done > self.stop_at
        self.total.add(latency, outcome, after_end)
        index = min(int((done - self.measure_from) // self.spec["window"]), self.last_window())
        self.windows.setdefault(index, Window()).add(latency, outcome, after_end)

    def last_window(self) -> int:
        return max(0, math.ceil(self.spec["duration"] / self.spec["window"]) - 1)

    async def report_windows(self) -> None:
        """Sends each window's summary once it has closed (the last one after the drain)."""
        window = self.spec["window"]
        for index in range(self.last_window()):
            await asyncio.sleep(max(0.0, self.measure_from + (index + 1) * window - time.perf_counter()))
            self.send_window(index, window)

    def send_window(self, index: int, seconds: float) -> None:
        if self.pipe is not None:
            self.pipe.send({"window": index, **self.windows.pop(index, Window()).summary(seconds)})


def generate(spec: dict[str, Any], pipe: Any) -> None:
    """The load generator process's entry: runs `OpenLoop` and sends its total on `pipe`."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> dict[str, Any]:
        return await OpenLoop(spec, pipe).run()

    pipe.send({"total": asyncio.run(main())})
    pipe.close()


def start_generator(spec: dict[str, Any]) -> tuple[Any, Any]:
    """Starts `generate` in a spawned process; returns (process, the parent's end of its pipe)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=generate, args=(spec, child), daemon=True)
    process.start()
    child.close()
    return process, parent


def offer(
    url: str, requests: list[bytes], rate: float, duration: float, warmup: float, connections: int
) -> dict:
    """One open-loop run from a separate process; returns its total summary."""
    host, port = url.removeprefix("http://").split(":")
    spec = {
        "host": host,
        "port": int(port),
        "requests": requests,
        "rate": rate,
        "duration": duration,
        "warmup": warmup,
        "connections": connections,
        "window": duration,
    }
    process, pipe = start_generator(spec)
    try:
        while True:
            message = pipe.recv()
            if "total" in message:
                return message["total"]
    finally:
        process.join(timeout=10)


# ---- the benchmark -------------------------------------------------------------------------


def drop_schema(schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def print_row(round_: int, rate: float, r: dict[str, Any]) -> None:
    print(
        f"{round_:>5} {rate:>8.0f} | {r['allow_rps']:>8.0f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f}"
        f" {r['p999_ms']:>8.1f} {r['max_ms']:>7.0f} | {r['errors']:>6} "
        + " ".join(f"{k}:{v}" for k, v in sorted(r["outcomes"].items()) if v and k != "ALLOW"),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", type=float, nargs="+", default=[500, 1000, 1500, 2000])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per rate")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--connections", type=int, default=96, help="keep-alive connections in the pool")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--target-rate", type=float, default=2000.0)
    parser.add_argument("--target-p99-ms", type=float, default=25.0)
    args = parser.parse_args()
    print("machine: " + " · ".join(f"{k} {v}" for k, v in machine_facts().items()))
    print(
        f"load: open loop, {args.connections} keep-alive connections, {args.duration:g} s per rate after"
        f" {args.warmup:g} s warm-up; postgresql, {args.workers} workers; gateway, database and"
        " generator on this machine\n"
    )
    header = (
        f"{'round':>5} {'offered':>8} | {'ALLOW/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8}"
        f" {'max ms':>7} | {'errors':>6}"
    )
    print(f"{header}\n{'-' * len(header)}")
    schema = f"verdict_bench_{secrets.token_hex(4)}"
    results: dict[float, list[dict]] = {rate: [] for rate in args.rates}
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "VERDICT_DATA_DIR": tmp,
            "VERDICT_WORKERS": str(args.workers),
            "VERDICT_DATABASE_URL": PG_URL,
            "VERDICT_DATABASE_SCHEMA": schema,
        }
        server = GatewayProcess(env).start(timeout=60)
        try:
            admin = (Path(tmp) / "admin.token").read_text().strip()
            _, agent = seed(server.url, admin)
            requests = proposal_requests("127.0.0.1", "/v1/agents/bot/propose", agent)
            for n in range(1, args.rounds + 1):
                for rate in args.rates if n % 2 else list(reversed(args.rates)):
                    r = offer(server.url, requests, rate, args.duration, args.warmup, args.connections)
                    results[rate].append(r)
                    print_row(n, rate, r)
        finally:
            server.stop()
            drop_schema(schema)
    if args.target_rate in results:
        p99s = [r["p99_ms"] for r in results[args.target_rate]]
        verdict = "met" if max(p99s) <= args.target_p99_ms else "missed"
        print(
            f"\ntarget p99 ≤ {args.target_p99_ms:g} ms at {args.target_rate:g} ALLOW/s offered: p99 "
            + ", ".join(f"{p:.1f}" for p in p99s)
            + f" ms → {verdict}"
        )


if __name__ == "__main__":
    main()
