"""Fault script (issue 11): break what is outside the gateway while it is under load, then count.

Scenarios, each against a real `verdict serve` with 16 clients proposing:
- `sigkill`: SIGKILL the gateway mid-load, start it again on the same data, N rounds, per backend;
- `pg-restart`: restart PostgreSQL (`pg_ctl restart -m fast`) mid-load. A throwaway cluster made
  with initdb in a temp dir on a free port: the machine's shared PostgreSQL is never touched;
- `full-disk`: SQLite on a small tmpfs that is filled up mid-load, then freed.

Afterwards the database is read back and the script reports, per scenario: answers 201 whose action
is not in the database (lost), actions without their audit entries, and answers with status 500.
All three must be 0 (exit status 1 otherwise).

    .venv/bin/python bench/faults.py                  # everything (~3 minutes)
    .venv/bin/python bench/faults.py --rounds 1 --only sigkill
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.settings import Settings  # noqa: E402
from tests.integration.filesystems import fill  # noqa: E402
from tests.integration.helpers import World, bearer, pay  # noqa: E402
from tests.integration.process import GatewayProcess, free_port  # noqa: E402
from tests.integration.test_crash import seed  # noqa: E402

PG_URL = os.environ.get("VERDICT_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_BIN = Path(os.environ.get("VERDICT_PG_BIN", "/usr/lib/postgresql/15/bin"))
CLIENTS = 16


@dataclass
class Tally:
    """What the clients saw."""

    answered: list[str] = field(default_factory=list)  # action ids answered 201
    statuses: Counter[int] = field(default_factory=Counter)
    no_answer: int = 0  # connection refused or cut (the server was down)

    def add(self, other: Tally) -> None:
        self.answered += other.answered
        self.statuses.update(other.statuses)
        self.no_answer += other.no_answer


@dataclass
class Outcome:
    scenario: str
    tally: Tally
    lost: int
    without_audit: int
    health_seen: Counter[int] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.without_audit == 0 and self.tally.statuses[500] == 0


async def load(url: str, world: World, stop: asyncio.Event, tally: Tally, tag: str) -> None:
    """CLIENTS clients proposing until `stop`; a refused or cut connection is retried."""

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = await http.post(
                        f"/v1/agents/{world.agent}/propose",
                        json=pay(f"{n}.{i:05d}", invoice_id=f"{tag}-{n}-{i}"),
                        headers=bearer(world.agent_token),
                    )
                except httpx.HTTPError:
                    tally.no_answer += 1
                    await asyncio.sleep(0.1)
                    continue
                tally.statuses[r.status_code] += 1
                if r.status_code == 201:
                    tally.answered.append(r.json()["action_id"])
                elif r.status_code == 503:
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")) / 10)

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))


async def watch_health(url: str, stop: asyncio.Event, seen: Counter[int]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        while not stop.is_set():
            try:
                seen[(await http.get("/health")).status_code] += 1
            except httpx.HTTPError:
                seen[0] += 1
            await asyncio.sleep(0.25)


async def verify(settings: Settings, world: World, tally: Tally) -> tuple[int, int]:
    """(answered actions missing from the database, actions without their audit entries), read
    back through a fresh app on the same data; the chain is checked link by link too."""
    from litestar.testing import AsyncTestClient

    from gateway.app import create_app
    from tests.integration.helpers import verified_log

    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = create_app(dataclasses.replace(settings, access_log=False, checkpoint_interval=0))
    async with AsyncTestClient(app=app) as c:
        c.app_state = app.state
        entries = await verified_log(c, world)
        by_seq = {e.seq: e for e in entries}
        stored, cursor = [], None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = (await c.get("/v1/actions", params=params, headers=bearer(world.auditor))).json()
            stored += page["actions"]
            cursor = page["next_cursor"]
            if not cursor:
                break
    ids = {a["action_id"] for a in stored}
    lost = sum(1 for action_id in tally.answered if action_id not in ids)
    without = 0
    for action in stored:
        seqs = action["audit_event_ids"]
        if not seqs or not all(s in by_seq and by_seq[s].action_id == action["action_id"] for s in seqs):
            without += 1
    without += abs(sum(e.type == "action.proposed" for e in entries) - len(stored))
    return lost, without


async def run_for(url: str, world: World, tally: Tally, seconds: float, tag: str, until: int = 0) -> None:
    """Load for `seconds` (or until `until` more answers), then return with the load stopped."""
    stop = asyncio.Event()
    task = asyncio.create_task(load(url, world, stop, tally, tag))
    start, began = len(tally.answered), time.monotonic()
    while time.monotonic() - began < seconds and not (until and len(tally.answered) - start >= until):
        await asyncio.sleep(0.05)
    stop.set()
    await task


async def sigkill(settings: Settings, rounds: int, label: str) -> Outcome:
    tally, world = Tally(), None
    for round_ in range(rounds):
        server = GatewayProcess(settings.to_env()).start(timeout=60)
        try:
            if world is None:
                world = await seed(server.url, (settings.data_dir / "admin.token").read_text().strip())
            stop = asyncio.Event()
            task = asyncio.create_task(load(server.url, world, stop, tally, f"k{round_}"))
            began, start = time.monotonic(), len(tally.answered)
            while len(tally.answered) - start < 150 and time.monotonic() - began < 20:
                await asyncio.sleep(0.05)
            server.kill()  # mid-flight
            stop.set()
            await task
        finally:
            server.stop()
    assert world is not None
    lost, without = await verify(settings, world, tally)
    return Outcome(f"SIGKILL x{rounds} ({label})", tally, lost, without)


class ThrowawayPostgres:
    """A PostgreSQL cluster of our own (initdb in a temp dir, a free port), to restart at will."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="verdict-pg-"))
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *args: str) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:  # initdb refuses root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> ThrowawayPostgres:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = str(self.dir / "data")
        self._as_postgres("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, *action: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on"
        log = str(self.dir / "server.log")
        self._as_postgres("pg_ctl", *action, "-D", str(self.dir / "data"), "-o", options, "-l", log, "-w")

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        with contextlib_suppress():
            self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def contextlib_suppress() -> Iterator[None]:
    try:
        yield
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        pass


async def pg_restart(data_dir: Path, restarts: int = 1) -> Outcome:
    cluster = ThrowawayPostgres().start()
    try:
        settings = Settings(data_dir=data_dir, database_url=cluster.url, checkpoint_interval=0.5)
        server = GatewayProcess(settings.to_env()).start(timeout=60)
        tally, health = Tally(), Counter()
        try:
            world = await seed(server.url, (data_dir / "admin.token").read_text().strip())
            stop = asyncio.Event()
            watcher = asyncio.create_task(watch_health(server.url, stop, health))
            task = asyncio.create_task(load(server.url, world, stop, tally, "r"))
            for _ in range(restarts):
                await asyncio.sleep(2)
                await asyncio.to_thread(cluster.restart)
            await asyncio.sleep(3)  # the gateway recovers by itself
            before = len(tally.answered)
            await asyncio.sleep(2)
            stop.set()
            await asyncio.gather(task, watcher)
            assert len(tally.answered) > before, "no proposal succeeded after the restart"
        finally:
            output = server.stop()
        lost, without = await verify(settings, world, tally)
        if "Traceback" in output:
            print(f"  note: the gateway logged a traceback:\n{output[output.index('Traceback') :][:2000]}")
        return Outcome(f"PostgreSQL restart x{restarts}", tally, lost, without, health)
    finally:
        cluster.stop()


async def full_disk(base: Path, size_mib: int = 16) -> Outcome:
    from tests.integration.filesystems import can_mount

    disk = base / "disk"
    disk.mkdir()
    if not can_mount():
        raise RuntimeError("full-disk needs root to mount a tmpfs")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(disk)], check=True)
    try:
        settings = Settings(data_dir=disk / "verdict", checkpoint_interval=0.5)
        server = GatewayProcess(settings.to_env()).start(timeout=60)
        tally, health = Tally(), Counter()
        try:
            world = await seed(server.url, (settings.data_dir / "admin.token").read_text().strip())
            stop = asyncio.Event()
            watcher = asyncio.create_task(watch_health(server.url, stop, health))
            await run_for(server.url, world, tally, 2, "d0")
            filler = fill(disk)
            await run_for(server.url, world, tally, 3, "d1")
            full_503 = tally.statuses[503]
            filler.unlink()
            await asyncio.sleep(1.5)
            await run_for(server.url, world, tally, 2, "d2")
            stop.set()
            await watcher
            assert full_503 > 0, "the disk never looked full"
        finally:
            output = server.stop()
        lines = [line for line in output.splitlines() if "storage failure" in line]
        print(
            f"  full disk: {len(lines)} storage-failure log line(s), {output.count('Traceback')} tracebacks"
        )
        lost, without = await verify(settings, world, tally)
        return Outcome(f"full disk ({size_mib} MiB tmpfs)", tally, lost, without, health)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@asynccontextmanager
async def shared_pg_schema() -> AsyncIterator[tuple[str, str]]:
    """A fresh schema on the shared PostgreSQL (dropped afterwards); the server is not restarted."""
    import asyncpg

    schema = f"verdict_faults_{secrets.token_hex(4)}"
    try:
        yield PG_URL, schema
    finally:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


def report(outcomes: list[Outcome]) -> None:
    print(
        f"\n{'scenario':<32} {'201':>6} {'503':>5} {'500':>4} {'other':>6} {'no ans':>7}"
        f" {'lost':>5} {'no audit':>9} {'/health seen':>14}"
    )
    for o in outcomes:
        s = o.tally.statuses
        other = sum(n for code, n in s.items() if code not in (201, 503, 500))
        health = " ".join(f"{code or 'down'}:{n}" for code, n in sorted(o.health_seen.items()))
        print(
            f"{o.scenario:<32} {s[201]:>6} {s[503]:>5} {s[500]:>4} {other:>6} {o.tally.no_answer:>7}"
            f" {o.lost:>5} {o.without_audit:>9} {health:>14}"
        )


async def run(args: argparse.Namespace) -> list[Outcome]:
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="verdict-faults-") as tmp:
        base = Path(tmp)
        if args.only in (None, "sigkill"):
            outcomes.append(await sigkill(Settings(data_dir=base / "k-sqlite"), args.rounds, "SQLite"))
            async with shared_pg_schema() as (url, schema):
                settings = Settings(data_dir=base / "k-pg", database_url=url, database_schema=schema)
                outcomes.append(await sigkill(settings, args.rounds, "PostgreSQL"))
        if args.only in (None, "pg-restart"):
            outcomes.append(await pg_restart(base / "r-pg", args.restarts))
        if args.only in (None, "full-disk"):
            outcomes.append(await full_disk(base))
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="SIGKILL rounds per backend")
    parser.add_argument("--restarts", type=int, default=2, help="PostgreSQL restarts under load")
    parser.add_argument("--only", choices=["sigkill", "pg-restart", "full-disk"], default=None)
    args = parser.parse_args()
    outcomes = asyncio.run(run(args))
    report(outcomes)
    bad = [o.scenario for o in outcomes if not o.ok]
    print(
        "\nFAILED: " + ", ".join(bad)
        if bad
        else "\nall scenarios: 0 lost, 0 without audit entries, 0 status 500"
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
