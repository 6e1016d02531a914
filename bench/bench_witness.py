"""The witnessed, tiled log: tile serving, the cosigning round trip, and what witnesses cost ALLOW.

    python bench/bench_witness.py [--entries 70000] [--seconds 10] [--backend sqlite|postgresql]
                                  [--part all|tiles|witnesses] [--interval SECONDS] [--nice N]

In one process, through the app (Litestar's in-process client: no sockets, one worker):

- tiles/s: random full level-0 hash tiles and entry bundles of a log of `--entries` entries
  (seeded through the ledger), each `GET …/log/tile/…` one range read of the stored subtree hashes;
- cosigning round trip: with 3 witnesses (`verdict witness serve`, real processes on loopback), the
  time to sign a checkpoint alone (baseline) and to sign it and gather the quorum's cosignatures
  (p50/p99 over rounds of one new entry each);
- ALLOW throughput: sequential proposals for `--seconds`, without witnesses (baseline, before and
  after) and with the 3 witnesses cosigning every checkpoint in the background, checkpoints (and
  witnessing rounds) at the gateway's default cadence (`Settings.checkpoint_interval`, 2 s) unless
  `--interval` says otherwise. Beside each rate, the CPU time it cost: this process's (the
  gateway's, per proposal) and the three witness processes' (which share the machine's cores:
  `--nice 19` runs them niced, so they yield to the gateway when both want a core).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from litestar.testing import AsyncTestClient  # noqa: E402

from audit.tiles import format_tile_path  # noqa: E402
from audit.witness_policy import parse_policy  # noqa: E402
from bench.load import PG_URL, machine_facts  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.ledger import EntryDraft, Ledger, Unit  # noqa: E402
from gateway.services.witnessing import WitnessingService  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.storage import open_database  # noqa: E402
from tests.integration.helpers import bearer, make_world, pay  # noqa: E402
from tests.integration.witnesses import WitnessProcess, policy_text  # noqa: E402


def settings_for(backend: str, directory: Path, **overrides) -> Settings:
    url = PG_URL if backend == "postgresql" else None
    schema = f"bench_witness_{int(time.time())}_{random.randrange(10**6)}" if url else None
    return Settings(
        data_dir=directory, database_url=url, database_schema=schema, access_log=False, **overrides
    )


async def seed(settings: Settings, count: int) -> None:
    db = open_database(settings.database_url, data_dir=settings.data_dir, schema=settings.database_schema)
    await db.open()
    ledger = Ledger(db)
    try:
        for at in range(0, count, 2000):
            drafts = [EntryDraft("bench.note", "bench", {"n": n}) for n in range(at, min(count, at + 2000))]
            await ledger.append("acme", Unit(drafts))
    finally:
        await ledger.close()
        await db.close()


async def tiles_per_second(settings: Settings, entries: int, seconds: float) -> dict[str, float]:
    app = create_app(settings)
    async with AsyncTestClient(app=app) as client:
        client.app_state = app.state
        world = await make_world(client)
        await seed(settings, entries)
        await client.post("/v1/tenants/acme/audit/checkpoint", headers=bearer(world.auditor))
        full = entries // 256
        out = {}
        for kind in ("0", "entries"):
            done, stop = 0, time.perf_counter() + seconds
            while time.perf_counter() < stop:
                path = format_tile_path(0 if kind == "0" else None, random.randrange(full))
                r = await client.get(f"/v1/tenants/acme/log/{path}", headers=bearer(world.auditor))
                assert r.status_code == 200, r.text
                done += 1
            out[f"{'hash tiles' if kind == '0' else 'entry bundles'}/s"] = done / seconds
        return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process used so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class Rate:
    per_second: float
    gateway_cpu_ms: float  # this process's CPU per proposal (all its threads)
    witnesses_cpu_s: float  # the witness processes' CPU over the run
    published: int = 0  # checkpoints witnessed (published under the quorum) during the run


async def allow_rate(client, world, seconds: float, witnesses: list[WitnessProcess] = ()) -> Rate:
    """Sequential proposals per second, after a second of warm-up, and the CPU they cost."""
    warm_until = time.perf_counter() + 1.0
    while time.perf_counter() < warm_until:
        await client.post("/v1/agents/ap-bot/propose", json=pay("2.00"), headers=bearer(world.agent_token))
    pids = [w.proc.pid for w in witnesses if w.proc is not None]
    witnesses_before = sum(map(cpu_seconds, pids))
    done, cpu_before, stop = 0, time.process_time(), time.perf_counter() + seconds
    while time.perf_counter() < stop:
        r = await client.post(
            "/v1/agents/ap-bot/propose", json=pay("2.00"), headers=bearer(world.agent_token)
        )
        assert r.status_code == 201, r.text
        done += 1
    cpu = time.process_time() - cpu_before
    return Rate(done / seconds, 1000 * cpu / done, sum(map(cpu_seconds, pids)) - witnesses_before)


def in_app(client, function, *args):
    """Run `function(*args)` on the app's own event loop (the test client's portal), where its
    database pool and locks live; blocks this loop meanwhile."""
    return client.blocking_portal.call(function, *args)


async def checkpoint_latency(
    client, audit, service, rounds: int, token: str, witnesses: list[WitnessProcess]
) -> tuple[list[float], float, float]:
    """Seconds to sign a checkpoint of one new entry (and, with `service`, get it cosigned), and
    the CPU seconds per round of this process and of the witness processes."""
    samples = []
    pids = [w.proc.pid for w in witnesses if w.proc is not None]
    cpu, witnesses_cpu = time.process_time(), sum(map(cpu_seconds, pids))
    for _ in range(rounds):
        await client.post("/v1/agents/ap-bot/propose", json=pay("1.00"), headers=bearer(token))
        began = time.perf_counter()
        signed = in_app(client, audit.checkpoint, "acme")
        if service is not None:
            published = in_app(client, service.witness, "acme")
            assert published is not None and published.size == signed.size
        samples.append(time.perf_counter() - began)
    cpu, witnesses_cpu = time.process_time() - cpu, sum(map(cpu_seconds, pids)) - witnesses_cpu
    return samples, cpu / rounds, witnesses_cpu / rounds


async def witnessed(
    settings: Settings, witnesses: list[WitnessProcess], seconds: float, rounds: int, pairs: int
) -> dict:
    """Checkpoint latency without and with the witnesses, then ALLOW rates alternating an app
    without witnesses and one with them, `pairs` times, ending with one without (B W B … W B)."""
    policy = settings.data_dir.parent / "policy"
    policy.write_text(policy_text(witnesses, 2))
    witnessed_settings = dataclasses.replace(settings, witness_policy=policy)
    out: dict[str, Any] = {}
    # Latency: an app without background checkpoints or a policy and, for the cosigning rounds, a
    # WitnessingService of the bench's own, both run on the app's loop (`in_app`).
    app = create_app(dataclasses.replace(settings, checkpoint_interval=0))
    async with AsyncTestClient(app=app) as client:
        client.app_state = app.state
        world = await make_world(client)
        for witness in witnesses:
            witness.watch(app.state.audit.vkey("acme"))
        signing, signing_cpu, _ = await checkpoint_latency(
            client, app.state.audit, None, rounds, world.agent_token, witnesses
        )
        service = WitnessingService(app.state.audit, parse_policy(policy.read_text()))
        try:
            cosigning, cosigning_cpu, witnesses_cpu = await checkpoint_latency(
                client, app.state.audit, service, rounds, world.agent_token, witnesses
            )
        finally:
            in_app(client, service.close)
    # The gateway's CPU for one witnessing round (the rounds differ only by it), and what it would
    # take from one busy core at this cadence: a model, immune to the machine's other load.
    out["gateway CPU ms per witnessing round"] = 1000 * (cosigning_cpu - signing_cpu)
    out["witnesses' CPU ms per round (all 3)"] = 1000 * witnesses_cpu
    out["gateway CPU share at the cadence, %"] = (
        100 * (cosigning_cpu - signing_cpu) / settings.checkpoint_interval
    )
    rates: list[tuple[str, Rate]] = []
    for turn in range(2 * pairs + 1):
        on = turn % 2 == 1
        app = create_app(witnessed_settings if on else settings)
        async with AsyncTestClient(app=app) as client:
            published_before = in_app(client, published_count, app.state.db)
            rate = await allow_rate(client, world, seconds, witnesses)
            if on:
                rate.published = in_app(client, published_count, app.state.db) - published_before
        rates.append(("with 3 witnesses" if on else "without witnesses", rate))
    out["rates"] = rates
    for name, samples in (("sign only", signing), ("sign + 3 witnesses", cosigning)):
        samples.sort()
        out[f"checkpoint p50 ms, {name}"] = 1000 * statistics.median(samples)
        out[f"checkpoint p99 ms, {name}"] = 1000 * samples[min(len(samples) - 1, int(0.99 * len(samples)))]
    return out


async def published_count(db) -> int:
    async with db.read() as conn:
        return int((await conn.fetchrow("SELECT COUNT(*) AS n FROM audit_witnessed"))["n"])


def print_witnessed(rates: list[tuple[str, Rate]]) -> None:
    """Each rate; each witnessed rate's cost against the mean of the baselines either side."""
    costs, cpu_added = [], []
    for turn, (name, rate) in enumerate(rates):
        line = (
            f"  ALLOW/s {name:<31} {rate.per_second:10.1f}   gateway CPU {rate.gateway_cpu_ms:5.2f} ms/ALLOW,"
            f" witnesses' CPU {rate.witnesses_cpu_s:5.2f} s"
        )
        if turn % 2 == 1:
            before, after = rates[turn - 1][1], rates[turn + 1][1]
            base = (before.per_second + after.per_second) / 2
            base_cpu = (before.gateway_cpu_ms + after.gateway_cpu_ms) / 2
            costs.append(100 * (base - rate.per_second) / base)
            cpu_added.append(100 * (rate.gateway_cpu_ms - base_cpu) / base_cpu)
            line += f", {rate.published} checkpoints witnessed; cost {costs[-1]:5.1f} %"
        print(line)
    print(
        f"  {'ALLOW cost of witnesses, median':<40} {statistics.median(costs):9.1f} %"
        f"   (each: {', '.join(f'{c:.1f}' for c in costs)})"
    )
    print(
        f"  {'gateway CPU per ALLOW added, median':<40} {statistics.median(cpu_added):9.1f} %"
        f"   (each: {', '.join(f'{c:.1f}' for c in cpu_added)})"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=70_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--part", choices=("all", "tiles", "witnesses"), default="all")
    parser.add_argument(
        "--interval", type=float, default=Settings().checkpoint_interval,
        help="seconds between checkpoints (and witnessing rounds); default: the gateway's default",
    )  # fmt: skip
    parser.add_argument("--nice", type=int, default=0, help="niceness of the witness processes")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument(
        "--pairs", type=int, default=3, help="witnessed ALLOW runs, each between two baselines"
    )
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if args.part in ("all", "tiles"):
            settings = settings_for(args.backend, tmp_path / "tiles", checkpoint_interval=0)
            results.update(await tiles_per_second(settings, args.entries, args.seconds))
        if args.part in ("all", "witnesses"):
            witnesses = [WitnessProcess(tmp_path / n, f"bench.witness/{n}") for n in ("a", "b", "c")]
            try:
                for witness in witnesses:
                    witness.start()
                    if args.nice:
                        os.setpriority(os.PRIO_PROCESS, witness.proc.pid, args.nice)
                settings = settings_for(args.backend, tmp_path / "gateway", checkpoint_interval=args.interval)
                results.update(await witnessed(settings, witnesses, args.seconds, args.rounds, args.pairs))
            finally:
                for witness in witnesses:
                    witness.stop()
    for key, value in machine_facts().items():
        print(f"{key:>10}: {value}")
    print(
        f"{'backend':>10}: {args.backend}, {args.entries} entries, {args.seconds:g} s per rate,"
        f" checkpoints every {args.interval:g} s, witnesses at nice {args.nice}"
    )
    if "rates" in results:
        print_witnessed(results.pop("rates"))
    for name, value in results.items():
        print(f"  {name:<40} {value:10.1f}")


if __name__ == "__main__":
    asyncio.run(main())
