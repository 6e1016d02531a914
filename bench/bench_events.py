"""Events fan-out benchmark: 100 Server-Sent Events subscribers while proposals run.

    python bench/bench_events.py                           # SQLite, 1 worker
    python bench/bench_events.py --backend postgresql --rate 1000 --subscribers 100 --rounds 3

Starts a real gateway (`verdict serve`), seeds a tenant, a policy and an agent (bench/load.py),
then measures two things, each from load-generator processes separate from the gateway:

1. Delivery: proposals paced at `--rate` per second (open loop) while `--subscribers` SSE
   connections follow the tenant's whole stream. Commit -> delivery is the time a subscriber
   read an event minus the entry's `time` (set when its batch is written, just before the
   commit: the figure slightly overstates the delay). Every subscriber must see every seq
   exactly once, in order.
2. Cost to ALLOW throughput: closed-loop proposals (as bench/load.py) with and without the
   subscribers, alternating `--rounds` times, so that drift on a shared machine hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

# Only the parent imports the gateway's test helpers (bench/load.py): the load processes are
# spawned, and must start in a fraction of a second even on a loaded machine.

_FRAME = re.compile(
    rb'id: (\d+)\ndata: \{"id":"[^"]*","seq":\d+,"tenant":"[^"]*","type":"[^"]*","time":"([^"]+)"'
)
BUCKET_MS = 0.1
BUCKETS = 100_000  # up to 10 s


# ---- subscribers (each process follows the stream over many connections) ---------------------


async def _follow(
    host: str, port: int, path: str, token: str, ready, histogram: list[int], stats: dict
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    with ready.get_lock():
        ready.value += 1
    times: dict[bytes, float] = {}  # a batch's entries share one time: parse it once
    last = None
    buffer = b""
    try:
        while True:  # until cancelled (`_subscribers`): no timer per read
            chunk = await reader.read(1 << 20)
            if not chunk:
                return
            received = time.time()
            buffer += chunk
            cut = buffer.rfind(b"\n\n")
            if cut < 0:
                continue
            complete, buffer = buffer[: cut + 2], buffer[cut + 2 :]
            # C loops over each chunk rather than Python work per event: the subscribers share
            # the gateway's cores, and what they spend is not the gateway's cost
            found = _FRAME.findall(complete)
            if not found:
                continue
            texts, stamped = zip(*found, strict=True)
            seqs = list(map(int, texts))
            first = seqs[0] if last is None else last + 1
            if seqs != list(range(first, first + len(seqs))):  # a gap, a repeat or disorder
                stats["gaps"] += sum(1 for a, b in zip([first - 1, *seqs], seqs, strict=False) if b != a + 1)
            last = seqs[-1]
            for stamp, count in Counter(stamped).items():  # an entry's delay: read time minus its own time
                committed = times.get(stamp)
                if committed is None:
                    committed = datetime.fromisoformat(stamp.decode().replace("Z", "+00:00")).timestamp()
                    if len(times) > 10_000:
                        times.clear()
                    times[stamp] = committed
                delay_ms = (received - committed) * 1000
                histogram[min(BUCKETS - 1, max(0, int(delay_ms / BUCKET_MS)))] += count
            stats["events"] += len(seqs)
    finally:
        writer.close()


def _subscribers(host: str, port: int, path: str, token: str, connections: int, stop, ready, results) -> None:
    histogram = [0] * BUCKETS
    stats = {"events": 0, "gaps": 0}

    async def run() -> None:
        tasks = [
            asyncio.ensure_future(_follow(host, port, path, token, ready, histogram, stats))
            for _ in range(connections)
        ]
        while not stop.is_set() and not all(task.done() for task in tasks):
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                raise outcome

    asyncio.run(run())
    results.put({"histogram": histogram, **stats})


def start_subscribers(url: str, tenant: str, token: str, count: int, processes: int = 2):
    """Start `count` SSE connections from the present over `processes` processes; return once
    every one is connected."""
    host, port = url.removeprefix("http://").split(":")
    ctx = multiprocessing.get_context("spawn")
    stop, ready, results = ctx.Event(), ctx.Value("i", 0), ctx.Queue()
    share = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    path = f"/v1/tenants/{tenant}/events/stream?heartbeat=5"
    workers = [
        ctx.Process(target=_subscribers, args=(host, int(port), path, token, n, stop, ready, results))
        for n in share
    ]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 120
    while ready.value < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {ready.value} of {count} subscribers connected")
        time.sleep(0.1)
    return workers, stop, results


def collect(handle) -> dict:
    workers, stop, results = handle
    stop.set()
    parts = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    histogram = [sum(column) for column in zip(*(r["histogram"] for r in parts), strict=True)]
    return {
        "events": sum(r["events"] for r in parts),
        "gaps": sum(r["gaps"] for r in parts),
        "histogram": histogram,
    }


def percentile(histogram: list[int], fraction: float) -> float:
    total = sum(histogram)
    if total == 0:
        return float("nan")
    wanted, seen = fraction * total, 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= wanted:
            return (index + 1) * BUCKET_MS
    return BUCKETS * BUCKET_MS


# ---- paced proposals ----------------------------------------------------------------------


async def _paced_connection(
    host: str, port: int, body_of, token: str, interval: float, stop_at: float, counts: dict
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    due = time.perf_counter()
    n = 0
    try:
        while time.perf_counter() < stop_at:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            due += interval
            body = body_of(n)
            n += 1
            writer.write(
                (
                    f"POST /v1/agents/bot/propose HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:"
            )
            answer = await reader.readexactly(length)
            counts["ok" if b'"decision":"ALLOW"' in answer else "other"] += 1
    finally:
        writer.close()


def _paced(args: tuple) -> dict:
    host, port, token, rate, connections, seconds = args
    counts = {"ok": 0, "other": 0}

    def body_of(n: int) -> bytes:
        action = {"type": "pay_invoice", "invoice_id": f"inv_{n}", "amount": f"{100 + n % 4000}.25",
                  "asset": "USDC", "vendor": "acme-supplies"}  # fmt: skip
        return json.dumps({"action": action}).encode()

    async def run() -> None:
        stop_at = time.perf_counter() + seconds
        interval = connections / rate
        await asyncio.gather(
            *(
                _paced_connection(host, port, body_of, token, interval, stop_at, counts)
                for _ in range(connections)
            )
        )

    asyncio.run(run())
    return counts


def propose_paced(url: str, token: str, rate: float, seconds: float, connections: int = 32) -> dict:
    host, port = url.removeprefix("http://").split(":")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_paced, ((host, int(port), token, rate, connections, seconds),))


# ---- the runs -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) used so far by process `pid` and its children
    (the gateway's workers), from /proc (Linux)."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def drive_measured(server, propose: tuple, warmup: float) -> dict:
    """bench/load.py's closed loop, with the gateway's CPU time per ALLOW (warm-up included, at
    the measured rate): less sensitive to other work on a shared machine than throughput."""
    from load import drive

    before = cpu_seconds(server.proc.pid)
    result = drive(*propose)
    used = cpu_seconds(server.proc.pid) - before
    result["cpu_ms_per_allow"] = used * 1000 / max(1.0, result["rps"] * (propose[5] + warmup))
    return result


def run(args: argparse.Namespace) -> dict:
    from load import PG_URL, seed

    from tests.integration.process import GatewayProcess

    schema = f"verdict_bench_{secrets.token_hex(4)}" if args.backend == "postgresql" else None
    with tempfile.TemporaryDirectory() as tmp:
        env = {"VERDICT_DATA_DIR": tmp, "VERDICT_WORKERS": str(args.workers), "VERDICT_ACCESS_LOG": "0"}
        if schema:
            env |= {"VERDICT_DATABASE_URL": PG_URL, "VERDICT_DATABASE_SCHEMA": schema}
        server = GatewayProcess(env).start(timeout=60)
        try:
            admin = (Path(tmp) / "admin.token").read_text().strip()
            tenant_admin, agent = seed(server.url, admin)
            # (1) delivery at a paced rate
            subscribers = start_subscribers(server.url, "bench", tenant_admin, args.subscribers)
            paced = propose_paced(server.url, agent, args.rate, args.duration)
            time.sleep(1)  # the last events reach the subscribers
            delivery = collect(subscribers)
            # (2) throughput with and without subscribers, alternating
            rounds = []
            propose = (
                server.url,
                "POST",
                "/v1/agents/bot/propose",
                agent,
                args.concurrency,
                args.duration,
                2,
            )
            for _ in range(args.rounds):
                without = drive_measured(server, propose, 2)
                subscribers = start_subscribers(server.url, "bench", tenant_admin, args.subscribers)
                with_subscribers = drive_measured(server, propose, 2)
                fanned = collect(subscribers)
                rounds.append({"without": without, "with": with_subscribers, "delivered": fanned})
        finally:
            server.stop()
            if schema:
                import asyncpg

                async def drop() -> None:
                    conn = await asyncpg.connect(PG_URL)
                    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                    await conn.close()

                asyncio.run(drop())
    return {"paced": paced, "delivery": delivery, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rate", type=float, default=1000.0, help="proposals/s in the delivery run")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    from load import machine_facts

    facts = machine_facts()
    print("machine: " + " · ".join(f"{k} {v}" for k, v in facts.items()))
    print(
        f"gateway: {args.backend}, {args.workers} worker(s); {args.subscribers} SSE subscribers of the whole stream\n"
    )
    result = run(args)
    paced, delivery = result["paced"], result["delivery"]
    expected_min = paced["ok"] * 2 * args.subscribers  # each ALLOW: action.proposed and verdict.issued
    print(
        f"delivery at {args.rate:.0f} proposals/s for {args.duration:.0f} s: {paced['ok']} ALLOW ({paced['other']} other);"
        f" {delivery['events']} events delivered (>= {expected_min} expected), gaps {delivery['gaps']}"
    )
    h = delivery["histogram"]
    print(
        f"  commit -> delivery: p50 {percentile(h, 0.5):.1f} ms · p99 {percentile(h, 0.99):.1f} ms"
        f" · p99.9 {percentile(h, 0.999):.1f} ms · max {percentile(h, 1.0):.1f} ms (target p99 <= 100 ms)\n"
    )
    print(
        f"{'round':>5} | {'ALLOW/s without':>15} {'p99 ms':>7} {'CPU ms':>6} |"
        f" {'ALLOW/s with':>12} {'p99 ms':>7} {'CPU ms':>6} | {'events out':>12}"
    )
    costs, cpu_costs = [], []
    for i, r in enumerate(result["rounds"], 1):
        w, s = r["without"], r["with"]
        costs.append(1 - s["rps"] / w["rps"])
        cpu_costs.append(s["cpu_ms_per_allow"] / w["cpu_ms_per_allow"] - 1)
        print(
            f"{i:>5} | {w['rps']:>15.0f} {w['p99_ms']:>7.1f} {w['cpu_ms_per_allow']:>6.2f} |"
            f" {s['rps']:>12.0f} {s['p99_ms']:>7.1f} {s['cpu_ms_per_allow']:>6.2f} | {r['delivered']['events']:>12}"
        )
    if costs:
        print(
            f"cost to ALLOW throughput: median {statistics.median(costs) * 100:.1f} %"
            f" (rounds: {', '.join(f'{c * 100:.1f} %' for c in costs)}; target <= 10 %)"
        )
        print(
            f"gateway CPU per ALLOW (its workers, every thread): median +{statistics.median(cpu_costs) * 100:.1f} %"
            f" with the subscribers (rounds: {', '.join(f'{c * 100:+.1f} %' for c in cpu_costs)})"
        )
    if args.json:
        for part in [delivery, *(r["delivered"] for r in result["rounds"])]:
            part.pop("histogram")
        args.json.write_text(
            json.dumps({"machine": facts, "args": vars(args) | {"json": None}, **result}, indent=2)
        )


if __name__ == "__main__":
    main()
