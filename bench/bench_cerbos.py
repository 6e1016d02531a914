"""Peer benchmark: Verdict's ALLOW/s against Cerbos's checks/s for the same policy, side by side.

    python bench/bench_cerbos.py                      # PostgreSQL, 2 workers, 48 connections, 3 rounds
    python bench/bench_cerbos.py --backend sqlite --workers 1 --rounds 2 --duration 5
    python bench/bench_cerbos.py --batch 100           # also decisions/s in batches of 100

Cerbos (a policy engine in Go that neither signs its decisions nor logs them durably) is
installed from npm (`@cerbos/cerbos-linux-x64`) into a temporary folder, with the reference
policy (the five rules of `examples/policy.yaml`) written as a Cerbos resource policy. Both
servers run at once on this machine; one load generator drives them in turn, alternating rounds
so that both see the same machine: wrk (Debian's, with a Lua script that varies each request's
invoice and amount), closed loop over keep-alive connections. Each round also measures Verdict's
`GET /health`, the ceiling of its HTTP stack. Printed: every round, then the ratios
Verdict ALLOW/s ÷ Cerbos checks/s and ALLOW/s ÷ health/s (median of the rounds).

Every Verdict answer counted is a 201 ALLOW with a signed verdict committed to the tenant's
log (checked afterwards: the log is an unbroken chain); every Cerbos answer an EFFECT_ALLOW.
wrk's latencies are closed-loop (they hide queueing that an open-loop load would show).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import PG_URL, check_log, machine_facts, seed

from tests.integration.process import GatewayProcess, free_port

CERBOS_PACKAGE = "@cerbos/cerbos-linux-x64"
WRK = shutil.which("wrk") or "/usr/bin/wrk"

# The reference policy of examples/policy.yaml, in Cerbos's terms: an agent may `pay`, unless a
# DENY rule holds. Verdict's two ESCALATE rules are DENYs here (Cerbos has no escalation); the
# benchmark's payments (100-4,100 USDC to acme-supplies on weekdays) match none of them.
CERBOS_POLICY = """\
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: default
  resource: action
  rules:
    - name: block-vendors
      actions: ["pay"]
      effect: EFFECT_DENY
      roles: ["agent"]
      condition:
        match:
          expr: R.attr.vendor in ["evil-corp", "shady-llc"]
    - name: cfo-over-5k
      actions: ["pay"]
      effect: EFFECT_DENY
      roles: ["agent"]
      condition:
        match:
          expr: R.attr.type == "pay_invoice" && double(R.attr.amount) > 5000.0 && double(R.attr.amount) <= 50000.0
    - name: execs-over-50k
      actions: ["pay"]
      effect: EFFECT_DENY
      roles: ["agent"]
      condition:
        match:
          expr: double(R.attr.amount) > 50000.0
    - name: night-trades
      actions: ["pay"]
      effect: EFFECT_DENY
      roles: ["agent"]
      condition:
        match:
          expr: R.attr.type == "trade_execution" && now().getHours() >= 22
    - name: allow-rest
      actions: ["pay"]
      effect: EFFECT_ALLOW
      roles: ["agent"]
"""

# wrk scripts: each request a different invoice and amount, as agents send them.
VERDICT_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
local n = 0
request = function()
  n = n + 1
  local body = string.format(
    '{"action":{"type":"pay_invoice","invoice_id":"inv_%%d","amount":"%%d.25","asset":"USDC","vendor":"acme-supplies"}}',
    n, 100 + n %% 4000)
  return wrk.format(nil, "%(path)s", nil, body)
end
"""
# A batch of %(size)d proposals per request (POST .../propose/batch): decisions/s = requests/s x size.
BATCH_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
local n = 0
request = function()
  local items = {}
  for i = 1, %(size)d do
    n = n + 1
    items[i] = string.format(
      '{"action":{"type":"pay_invoice","invoice_id":"inv_%%d","amount":"%%d.25","asset":"USDC","vendor":"acme-supplies"}}',
      n, 100 + n %% 4000)
  end
  return wrk.format(nil, "%(path)s", nil, '{"actions":[' .. table.concat(items, ",") .. ']}')
end
"""
CERBOS_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = string.format(
    '{"requestId":"r%%d","principal":{"id":"bot","roles":["agent"]},"resources":[{"actions":["pay"],'
    .. '"resource":{"kind":"action","id":"inv_%%d","attr":{"type":"pay_invoice","invoice_id":"inv_%%d",'
    .. '"amount":"%%d.25","asset":"USDC","vendor":"acme-supplies"}}}]}',
    n, n, n, 100 + n %% 4000)
  return wrk.format(nil, "/api/check/resources", nil, body)
end
"""


def install_cerbos(folder: Path) -> Path:
    """`npm install` the Cerbos binary into `folder`; returns its path. Raises RuntimeError."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to install Cerbos (node 20 + npm)")
    subprocess.run(
        [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(folder), CERBOS_PACKAGE],
        check=True,
        capture_output=True,
    )
    binary = folder / "node_modules" / "@cerbos" / "cerbos-linux-x64" / "cerbos-linux-x64"
    binary.chmod(0o755)
    return binary


def start_cerbos(binary: Path, folder: Path) -> tuple[subprocess.Popen, str]:
    """Start Cerbos on free ports with the reference policy; returns the process and its URL."""
    policies = folder / "policies"
    policies.mkdir()
    (policies / "action.yaml").write_text(CERBOS_POLICY)
    http_port, grpc_port = free_port(), free_port()
    config = folder / "cerbos.yaml"
    config.write_text(
        f'server:\n  httpListenAddr: "127.0.0.1:{http_port}"\n  grpcListenAddr: "127.0.0.1:{grpc_port}"\n'
        f"storage:\n  driver: disk\n  disk:\n    directory: {policies}\n    watchForChanges: false\n"
        "audit:\n  enabled: false\n"
    )
    log = (folder / "cerbos.log").open("wb")
    process = subprocess.Popen(
        [str(binary), "server", f"--config={config}"], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", http_port), timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError(f"Cerbos did not start; see {folder / 'cerbos.log'}")
    return process, url


def check_cerbos_allows(url: str) -> None:
    """One check by hand: the benchmark's request is an EFFECT_ALLOW. Raises RuntimeError."""
    body = {
        "requestId": "probe",
        "principal": {"id": "bot", "roles": ["agent"]},
        "resources": [
            {
                "actions": ["pay"],
                "resource": {
                    "kind": "action",
                    "id": "inv_1",
                    "attr": {"type": "pay_invoice", "amount": "1200.25", "vendor": "acme-supplies"},
                },
            }
        ],
    }
    for _ in range(50):
        try:
            answer = httpx.post(f"{url}/api/check/resources", json=body, timeout=5).json()
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    effect = answer["results"][0]["actions"]["pay"]
    if effect != "EFFECT_ALLOW":
        raise RuntimeError(f"Cerbos answered {effect} for the benchmark's request: {answer}")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, script: str | None, threads: int, connections: int, duration: float) -> dict:
    """Drive `url` with wrk; returns requests/s, p50/p99 in ms and the count of non-2xx answers."""
    args = [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s", "--latency", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        if script is not None:
            lua.write(script)
    try:
        if script is not None:
            args[1:1] = ["-s", lua.name]
        out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(lua.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {
        p: float(v) * _UNITS[u]
        for p, v, u in re.findall(r"^\s+(50|99)(?:\.\d+)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": latency.get("50", float("nan")),
        "p99_ms": latency.get("99", float("nan")),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def start_verdict(backend: str, workers: int, data_dir: str, schema: str | None) -> GatewayProcess:
    env = {"VERDICT_DATA_DIR": data_dir, "VERDICT_WORKERS": str(workers)}
    if backend == "postgresql":
        env |= {"VERDICT_DATABASE_URL": PG_URL, "VERDICT_DATABASE_SCHEMA": schema or ""}
    return GatewayProcess(env).start(timeout=60)


def drop_schema(schema: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()

    asyncio.run(drop())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--batch", type=int, default=0, help="also measure batch proposals of this many actions (at most 100)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    facts = machine_facts()
    print("machine: " + " · ".join(f"{k} {v}" for k, v in facts.items()))
    print(
        f"load: wrk {args.threads} threads, {args.connections} keep-alive connections, closed loop,"
        f" {args.duration:g} s per measurement; Verdict ({args.backend}, {args.workers} workers,"
        " checkpoints every 2 s, access log on), Cerbos and wrk on this machine\n"
    )
    schema = f"verdict_bench_{os.getpid()}" if args.backend == "postgresql" else None
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        binary = install_cerbos(folder / "cerbos")
        version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.split()[0]
        cerbos, cerbos_url = start_cerbos(binary, folder)
        server = start_verdict(args.backend, args.workers, str(folder / "verdict"), schema)
        try:
            check_cerbos_allows(cerbos_url)
            tenant_admin, agent = seed(server.url, (folder / "verdict" / "admin.token").read_text().strip())
            verdict_lua = VERDICT_LUA % {"token": agent, "path": "/v1/agents/bot/propose"}
            warm = min(3.0, args.duration)
            run_wrk(server.url, verdict_lua, args.threads, args.connections, warm)
            run_wrk(cerbos_url, CERBOS_LUA, args.threads, args.connections, warm)
            header = (
                f"{'round':>5} | {'Verdict ALLOW/s':>15} {'p50 ms':>7} {'p99 ms':>7} | {'Cerbos checks/s':>15}"
                f" {'p50 ms':>7} {'p99 ms':>7} | {'health/s':>8} | {'ALLOW÷Cerbos':>12} {'ALLOW÷health':>12}"
            )
            print(f"Cerbos {version}\n{header}\n{'-' * len(header)}")
            for n in range(1, args.rounds + 1):
                order = ["verdict", "cerbos"] if n % 2 else ["cerbos", "verdict"]  # alternate who goes first
                got: dict[str, dict] = {}
                for who in order:
                    if who == "verdict":
                        got[who] = run_wrk(
                            server.url, verdict_lua, args.threads, args.connections, args.duration
                        )
                    else:
                        got[who] = run_wrk(
                            cerbos_url, CERBOS_LUA, args.threads, args.connections, args.duration
                        )
                got["health"] = run_wrk(
                    server.url + "/health", None, args.threads, args.connections, min(args.duration, 5)
                )
                if args.batch:
                    batch_lua = BATCH_LUA % {
                        "token": agent,
                        "path": "/v1/agents/bot/propose/batch",
                        "size": args.batch,
                    }
                    # a batch is `size` proposals' work: 2 per worker keep enough in flight
                    conns = max(args.threads, 2 * args.workers)
                    got["batch"] = run_wrk(server.url, batch_lua, args.threads, conns, args.duration)
                    got["batch"]["decisions"] = got["batch"]["rps"] * args.batch
                    print(f"  batches of {args.batch} over {conns} connections: {got['batch']['decisions']:.0f}"
                          f" decisions/s, p99 {got['batch']['p99_ms']:.0f} ms per batch,"
                          f" {got['batch']['non_2xx']} non-2xx")  # fmt: skip
                v, c, h = got["verdict"], got["cerbos"], got["health"]
                if v["non_2xx"] or c["non_2xx"]:
                    print(f"  warning: non-2xx answers: Verdict {v['non_2xx']}, Cerbos {c['non_2xx']}")
                rounds.append(got)
                print(
                    f"{n:>5} | {v['rps']:>15.0f} {v['p50_ms']:>7.1f} {v['p99_ms']:>7.1f} | {c['rps']:>15.0f}"
                    f" {c['p50_ms']:>7.1f} {c['p99_ms']:>7.1f} | {h['rps']:>8.0f} |"
                    f" {v['rps'] / c['rps']:>11.2f}x {v['rps'] / h['rps']:>11.2f}x",
                    flush=True,
                )
            entries = check_log(server.url, tenant_admin)
        finally:
            server.stop()
            cerbos.terminate()
            cerbos.wait(timeout=10)
            if schema:
                drop_schema(schema)
    peer = statistics.median(r["verdict"]["rps"] / r["cerbos"]["rps"] for r in rounds)
    own = statistics.median(r["verdict"]["rps"] / r["health"]["rps"] for r in rounds)
    print(f"\nmedian of {len(rounds)} rounds: Verdict ALLOW/s ÷ Cerbos checks/s = {peer:.2f}x;")
    print(f"Verdict ALLOW/s ÷ its own GET /health/s = {own:.2f}x; Verdict's log: {entries} entries, chain ok")
    if args.json:
        args.json.write_text(json.dumps({"machine": facts, "cerbos": version, "rounds": rounds}, indent=2))


if __name__ == "__main__":
    main()
