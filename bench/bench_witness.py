"""The witnessed, tiled log: tile serving, the cosigning round trip, and what witnesses cost ALLOW.

    python bench/bench_witness.py [--entries 70000] [--seconds 5] [--backend sqlite|postgresql]

In one process, through the app (Litestar's in-process client: no sockets, one worker):

- tiles/s: random full level-0 hash tiles and entry bundles of a log of `--entries` entries
  (seeded through the ledger), each `GET …/log/tile/…` one range read of the stored subtree hashes;
- cosigning round trip: with 3 witnesses (`verdict witness serve`, real processes on loopback), the
  time to sign a checkpoint alone (baseline) and to sign it and gather the quorum's cosignatures
  (p50/p99 over rounds of one new entry each);
- ALLOW throughput: sequential proposals for `--seconds`, without witnesses (baseline) and with the
  3 witnesses cosigning every checkpoint in the background (checkpoints every 0.5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from litestar.testing import AsyncTestClient  # noqa: E402

from audit.tiles import format_tile_path  # noqa: E402
from bench.load import PG_URL, machine_facts  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.ledger import EntryDraft, Ledger, Unit  # noqa: E402
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


async def allow_rate(client, world, seconds: float) -> float:
    """Sequential proposals per second, after a second of warm-up."""
    warm_until = time.perf_counter() + 1.0
    while time.perf_counter() < warm_until:
        await client.post("/v1/agents/ap-bot/propose", json=pay("2.00"), headers=bearer(world.agent_token))
    done, stop = 0, time.perf_counter() + seconds
    while time.perf_counter() < stop:
        r = await client.post(
            "/v1/agents/ap-bot/propose", json=pay("2.00"), headers=bearer(world.agent_token)
        )
        assert r.status_code == 201, r.text
        done += 1
    return done / seconds


async def witnessed(settings: Settings, witnesses: list[WitnessProcess], seconds: float, rounds: int) -> dict:
    policy = settings.data_dir.parent / "policy"
    policy.write_text(policy_text(witnesses, 2))
    out: dict[str, float] = {}
    app = create_app(settings)  # baseline: no witnesses
    async with AsyncTestClient(app=app) as client:
        client.app_state = app.state
        world = await make_world(client)
        out["ALLOW/s without witnesses"] = await allow_rate(client, world, seconds)
        audit = app.state.audit
        signing = []
        for _ in range(rounds):
            await client.post(
                "/v1/agents/ap-bot/propose", json=pay("1.00"), headers=bearer(world.agent_token)
            )
            began = time.perf_counter()
            await audit.checkpoint("acme")
            signing.append(time.perf_counter() - began)
    app = create_app(dataclasses.replace(settings, witness_policy=policy))
    async with AsyncTestClient(app=app) as client:
        for witness in witnesses:
            witness.watch(app.state.audit.vkey("acme"))
        audit, service = app.state.audit, app.state.witnessing
        cosigning = []
        for _ in range(rounds):
            await client.post(
                "/v1/agents/ap-bot/propose", json=pay("1.00"), headers=bearer(world.agent_token)
            )
            began = time.perf_counter()
            await audit.checkpoint("acme")
            published = await service.witness("acme")
            cosigning.append(time.perf_counter() - began)
            assert published is not None and published.size == (await audit.latest("acme")).size
        out["ALLOW/s with 3 witnesses"] = await allow_rate(client, world, seconds)
    app = create_app(settings)  # the baseline again, after: on a busy machine the order matters
    async with AsyncTestClient(app=app) as client:
        out["ALLOW/s without witnesses, again"] = await allow_rate(client, world, seconds)
    for name, samples in (("sign only", signing), ("sign + 3 witnesses", cosigning)):
        samples.sort()
        out[f"checkpoint p50 ms, {name}"] = 1000 * statistics.median(samples)
        out[f"checkpoint p99 ms, {name}"] = 1000 * samples[min(len(samples) - 1, int(0.99 * len(samples)))]
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=70_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        results = await tiles_per_second(
            settings_for(args.backend, tmp_path / "tiles", checkpoint_interval=0), args.entries, args.seconds
        )
        witnesses = [WitnessProcess(tmp_path / n, f"bench.witness/{n}") for n in ("a", "b", "c")]
        try:
            for witness in witnesses:
                witness.start()
            settings = settings_for(args.backend, tmp_path / "gateway", checkpoint_interval=0.5)
            results.update(await witnessed(settings, witnesses, args.seconds, args.rounds))
        finally:
            for witness in witnesses:
                witness.stop()
    for key, value in machine_facts().items():
        print(f"{key:>10}: {value}")
    print(f"{'backend':>10}: {args.backend}, {args.entries} entries, {args.seconds:g} s per rate")
    for name, value in results.items():
        print(f"  {name:<40} {value:10.1f}")
    base = (results["ALLOW/s without witnesses"] + results["ALLOW/s without witnesses, again"]) / 2
    witnessed_rate = results["ALLOW/s with 3 witnesses"]
    print(f"  {'ALLOW cost of witnesses (vs mean base)':<40} {100 * (base - witnessed_rate) / base:9.1f} %")


if __name__ == "__main__":
    asyncio.run(main())
