"""Webhook deliveries/s to a local receiver, and the delay from a commit to its delivery.

    python bench/bench_webhooks.py [--backend sqlite|postgresql|both] [--endpoints 1 4 16] [--actions 500]

Starts a real gateway (`verdict serve`, one worker, private targets allowed) per configuration
and a minimal HTTP/1.1 receiver on a loopback port (keep-alive, answers 204 at once, no
signature check: the receiver's cost is not the gateway's). Then:

- drain: `--endpoints` webhooks, disabled, while `--actions` proposals commit (two events each,
  action.proposed and verdict.issued); all are enabled at once and the time until the receiver
  has every event at every endpoint gives deliveries/s (each one signed, posted, answered and
  its attempt recorded with the new position, durably);
- baseline, in the same run: the same number of POSTs of the same body from one plain httpx
  client, one at a time (the ceiling of in-order delivery to one endpoint on this machine);
- live: with one endpoint caught up, proposals one after another; the delay from the proposal's
  answer (its commit) to the receiver holding its `action.proposed` (p50/p99 ms).
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

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load import PG_URL, machine_facts, seed  # noqa: E402
from tests.integration.process import GatewayProcess  # noqa: E402


class FastReceiver:
    """Counts deliveries per path and notes when each event id arrived (first time)."""

    def __init__(self) -> None:
        self.count = 0
        self.arrived: dict[str, float] = {}
        self.server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, event_id = 0, ""
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"webhook-id":
                        event_id = value.strip().decode()
                await reader.readexactly(length)
                self.count += 1
                self.arrived.setdefault(event_id, time.perf_counter())
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self._writers):  # the handlers end at EOF, not cancelled at exit
            writer.close()
        await asyncio.sleep(0.05)


async def propose(http: httpx.AsyncClient, agent: str, n: int) -> dict:
    action = {"type": "pay_invoice", "invoice_id": f"inv_{n}", "amount": f"{n % 900 + 1}.00",
              "asset": "USDC", "vendor": "acme-supplies"}  # fmt: skip
    r = await http.post(
        "/v1/agents/bot/propose", json={"action": action}, headers={"Authorization": f"Bearer {agent}"}
    )
    r.raise_for_status()
    return r.json()


async def run(backend: str, endpoints: int, actions: int, live: int) -> dict:
    schema = f"verdict_bench_{secrets.token_hex(4)}" if backend == "postgresql" else None
    receiver = FastReceiver()
    base = await receiver.start()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"VERDICT_DATA_DIR": tmp, "VERDICT_WORKERS": "1", "VERDICT_ACCESS_LOG": "0",
               "VERDICT_CHECKPOINT_INTERVAL": "0", "VERDICT_WEBHOOK_ALLOW_PRIVATE": "1"}  # fmt: skip
        if schema:
            env |= {"VERDICT_DATABASE_URL": PG_URL, "VERDICT_DATABASE_SCHEMA": schema}
        server = GatewayProcess(env).start(timeout=60)
        try:
            admin = (Path(tmp) / "admin.token").read_text().strip()
            tenant_admin, agent = await asyncio.to_thread(seed, server.url, admin)
            auth = {"Authorization": f"Bearer {tenant_admin}"}
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                hooks = []
                for i in range(endpoints):
                    r = await http.post(
                        "/v1/tenants/bench/webhooks", json={"url": f"{base}/e{i}"}, headers=auth
                    )
                    r.raise_for_status()
                    hooks.append(r.json()["id"])
                    await http.patch(
                        f"/v1/tenants/bench/webhooks/{hooks[-1]}", json={"enabled": False}, headers=auth
                    )
                for n in range(actions):
                    await propose(http, agent, n)
                positions = [await webhook_position(http, h, auth) for h in hooks]  # still disabled
                began = time.perf_counter()
                await asyncio.gather(
                    *(
                        http.patch(f"/v1/tenants/bench/webhooks/{h}", json={"enabled": True}, headers=auth)
                        for h in hooks
                    )
                )
                # every proposal's two events, and the enabling entries after each webhook's position
                size = (await http.get("/v1/tenants/bench/audit/entries", params={"start": 0, "end": 0},
                                       headers=auth)).json()["size"]  # fmt: skip
                want = sum(size - 1 - position for position in positions)
                while receiver.count < want:
                    await asyncio.sleep(0.01)
                drain = time.perf_counter() - began
                delivered = receiver.count
                baseline = await post_baseline(f"{base}/baseline", min(delivered, 2000))
                delays = []
                for n in range(live):
                    proposed = await propose(http, agent, 10_000 + n)
                    answered = time.perf_counter()
                    event_id = f"bench:{proposed['audit_event_id']}"
                    while event_id not in receiver.arrived:
                        await asyncio.sleep(0.0005)
                    delays.append((receiver.arrived[event_id] - answered) * 1000)
                    await asyncio.sleep(0.02)
        finally:
            server.stop()
            await receiver.close()
            if schema:
                import asyncpg

                conn = await asyncpg.connect(PG_URL)
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                await conn.close()
    delays.sort()
    return {
        "backend": backend,
        "endpoints": endpoints,
        "delivered": delivered,
        "drain_s": drain,
        "per_s": delivered / drain,
        "baseline_per_s": baseline,
        "live_p50_ms": statistics.median(delays) if delays else 0.0,
        "live_p99_ms": delays[min(len(delays) - 1, int(len(delays) * 0.99))] if delays else 0.0,
    }


async def webhook_position(http: httpx.AsyncClient, hook: str, auth: dict[str, str]) -> int:
    """Where the webhook starts (the drain begins with no delivery made yet)."""
    r = await http.get(f"/v1/tenants/bench/webhooks/{hook}", headers=auth)
    return int(r.json()["delivered_through"])


async def post_baseline(url: str, count: int) -> float:
    body = b'{"id":"bench:1","seq":1,"tenant":"bench","type":"action.proposed","data":{}}' * 8
    async with httpx.AsyncClient() as http:
        began = time.perf_counter()
        for _ in range(count):
            (await http.post(url, content=body, headers={"webhook-id": "baseline"})).raise_for_status()
        return count / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--endpoints", type=int, nargs="*", default=[1, 4, 16])
    parser.add_argument("--actions", type=int, default=500)
    parser.add_argument("--live", type=int, default=200)
    args = parser.parse_args()
    print("machine: " + " · ".join(f"{k} {v}" for k, v in machine_facts().items()))
    print("gateway (1 worker), database, receiver and this script on this machine\n")
    header = (
        f"{'backend':<11} {'endpoints':>9} | {'delivered':>9} {'seconds':>7} {'deliveries/s':>12} "
        f"{'baseline/s':>10} | {'live p50 ms':>11} {'p99 ms':>7}"
    )
    print(header)
    print("-" * len(header))
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        for endpoints in args.endpoints:
            r = asyncio.run(run(backend, endpoints, args.actions, args.live))
            print(
                f"{backend:<11} {endpoints:>9} | {r['delivered']:>9} {r['drain_s']:>7.2f} {r['per_s']:>12.0f} "
                f"{r['baseline_per_s']:>10.0f} | {r['live_p50_ms']:>11.1f} {r['live_p99_ms']:>7.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
