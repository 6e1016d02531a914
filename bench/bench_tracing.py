"""Per-request cost of the tracing layer and of the body checks, on one core.

    python bench/bench_tracing.py

Compares, in the same run:
- a bare ASGI app vs the same app behind `gateway.tracing.Tracing` with the access log off and
  on (the log written to /dev/null by the same handler `verdict serve` uses);
- `json.loads` of a proposal body alone (the floor) vs `gateway.bodies.check_json_text`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.bodies import check_json_text  # noqa: E402
from gateway.tracing import ACCESS_LOGGER, AccessLogHandler, Tracing  # noqa: E402

BODY = json.dumps(
    {
        "action": {
            "type": "pay_invoice",
            "invoice_id": "inv_8231",
            "amount": "1200.00",
            "asset": "USDC",
            "vendor": "acme-supplies",
        }
    }
).encode()
N = 50_000


async def bare_app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def scope() -> dict:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/agents/ap-bot/propose",
        "path_template": "/v1/agents/{agent_id:str}/propose",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"authorization", b"Bearer vk_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
            (b"content-type", b"application/json"),
            (b"content-length", b"120"),
            (b"user-agent", b"bench/1"),
        ],
        "client": ("127.0.0.1", 50000),
        "state": {},
    }


async def per_call_us(app) -> float:
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message) -> None:
        return None

    for _ in range(1000):
        await app(scope(), receive, send)
    started = time.perf_counter()
    for _ in range(N):
        await app(scope(), receive, send)
    return (time.perf_counter() - started) / N * 1e6


def body_us(fn) -> float:
    for _ in range(1000):
        fn(BODY)
    started = time.perf_counter()
    for _ in range(N):
        fn(BODY)
    return (time.perf_counter() - started) / N * 1e6


def main() -> None:
    print(f"python {platform.python_version()} · {platform.machine()} · {os.cpu_count()} cores")
    bare = asyncio.run(per_call_us(bare_app))
    off = asyncio.run(per_call_us(Tracing(bare_app, log_requests=False)))
    log = logging.getLogger(ACCESS_LOGGER)
    with open(os.devnull, "w") as devnull:
        log.addHandler(AccessLogHandler(devnull))
        log.setLevel(logging.INFO)
        log.propagate = False
        on = asyncio.run(per_call_us(Tracing(bare_app, log_requests=True)))
    print(f"{'ASGI call':<44} {'µs':>7} {'added':>7}")
    print(f"{'bare app':<44} {bare:7.2f}")
    print(f"{'Tracing, access log off':<44} {off:7.2f} {off - bare:7.2f}")
    print(f"{'Tracing, access log on (AccessLogHandler)':<44} {on:7.2f} {on - bare:7.2f}")
    floor = body_us(json.loads)
    checked = body_us(check_json_text)
    print(f"{'proposal body (' + str(len(BODY)) + ' bytes)':<44} {'µs':>7} {'added':>7}")
    print(f"{'json.loads':<44} {floor:7.2f}")
    print(f"{'check_json_text':<44} {checked:7.2f} {checked - floor:7.2f}")


if __name__ == "__main__":
    main()
