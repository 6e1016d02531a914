"""A reference bank: a real payments API on a loopback port, with a ledger, that misbehaves on demand.

It speaks what `gateway.rails.bank_api` expects (POST /payments with Idempotency-Key,
GET /payments?idempotency_key=, GET /payments/{id}, POST /payments/{id}/reversal) and keeps
every payment it ever committed, so tests count them. Faults, queued with `inject`:

- `error_after_commit`: commit the payment, then answer 500;
- `timeout_after_commit`: commit, then hold the answer past the client's timeout;
- `slow`: wait `delay` seconds, then answer normally;
- `duplicate`: process the request twice, as if the network delivered it twice;
- `refuse`: answer 422 `insufficient_funds`, committing nothing;
- `error`: answer 503 without committing anything.

`stop()` and `start()` take it down and bring it back on the same port. `latency` delays every
answer (the benchmark's 5 ms bank). Run alone: `python -m tests.bank --latency 0.005` prints its URL.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_KEY = "sk_test_reference_bank"


@dataclass
class Fault:
    kind: str
    route: str = "submit"  # submit | status | reverse
    delay: float = 0.0


@dataclass
class Ledger:
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    reversals: dict[str, dict[str, Any]] = field(default_factory=dict)  # idempotency key -> reversal
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) in arrival order


class ReferenceBank:
    def __init__(self, *, api_key: str = API_KEY, latency: float = 0.0, hang_seconds: float = 2.0) -> None:
        self.api_key = api_key
        self.latency = latency
        self.hang_seconds = hang_seconds
        self.processing_polls = 0  # status answers "processing" this many times before "succeeded"
        self.ledger = Ledger()
        self.faults: deque[Fault] = deque()
        self.lock = threading.Lock()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, kind: str, route: str = "submit", *, times: int = 1, delay: float = 0.0) -> None:
        for _ in range(times):
            self.faults.append(Fault(kind, route, delay))

    def payments_for(self, reference: str) -> list[dict[str, Any]]:
        """The committed payments whose `reference` (the action id) is this one."""
        with self.lock:
            return [p for p in self.ledger.payments.values() if p["reference"] == reference]

    def start(self) -> ReferenceBank:
        bank = self

        class Handler(_Handler):
            pass

        Handler.bank = bank
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="reference-bank")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ReferenceBank:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ---- the API (called from the handler threads)

    def take_fault(self, route: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.route == route:
                    self.faults.remove(fault)
                    return fault
        return None

    def create(self, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            existing = self.ledger.by_key.get(key)
            if existing is not None:
                payment = self.ledger.payments[existing]
                if payment["request"] != body:
                    return 409, {"code": "idempotency_key_reused"}
                return 200, _public(payment)
            payment = {
                "id": "pay_" + secrets.token_hex(8),
                "status": "processing" if self.processing_polls else "succeeded",
                "amount": body["amount"],
                "currency": body["currency"],
                "creditor": body["creditor"],
                "reference": body["reference"],
                "end_to_end_id": body["end_to_end_id"],
                "idempotency_key": key,
                "request": body,
                "polls_left": self.processing_polls,
                "reversed": False,
            }
            self.ledger.payments[payment["id"]] = payment
            self.ledger.by_key[key] = payment["id"]
            return 201, _public(payment)

    def lookup(self, key: str) -> dict[str, Any]:
        with self.lock:
            found = [self.ledger.payments[self.ledger.by_key[key]]] if key in self.ledger.by_key else []
            for payment in found:
                if payment["status"] == "processing":
                    payment["polls_left"] -= 1
                    if payment["polls_left"] < 0:
                        payment["status"] = "succeeded"
            return {"payments": [_public(p) for p in found]}

    def reverse(self, payment_id: str, key: str, reason: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            payment = self.ledger.payments.get(payment_id)
            if payment is None:
                return 404, {"code": "payment_not_found"}
            if key in self.ledger.reversals:
                return 200, self.ledger.reversals[key]
            if payment["reversed"]:
                return 409, {"code": "already_reversed"}
            payment["reversed"] = True
            reversal = {"id": "rev_" + secrets.token_hex(8), "status": "succeeded", "payment_id": payment_id,
                        "reason": reason}  # fmt: skip
            self.ledger.reversals[key] = reversal
            return 201, reversal


def _public(payment: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payment.items() if k not in ("request", "polls_left")}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real bank APIs
    bank: ReferenceBank

    def setup(self) -> None:
        super().setup()
        # one answer is two writes (head, body): without this, Nagle and delayed ACKs add ~40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *_: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, document: dict[str, Any]) -> None:
        raw = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.bank.api_key}":
            self._answer(401, {"code": "unauthorized"})
            return False
        return True

    def do_GET(self) -> None:
        bank = self.bank
        with bank.lock:
            bank.ledger.requests.append(("GET", self.path))
        if not self._authorized():
            return
        time.sleep(bank.latency)
        parts = urlsplit(self.path)
        fault = bank.take_fault("status")
        if fault is not None and fault.kind == "error":
            self._answer(503, {"code": "unavailable"})
            return
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        if parts.path == "/payments":
            key = parse_qs(parts.query).get("idempotency_key", [""])[0]
            self._answer(200, bank.lookup(key))
            return
        payment_id = parts.path.removeprefix("/payments/")
        with bank.lock:
            payment = bank.ledger.payments.get(payment_id)
        self._answer(200, _public(payment)) if payment else self._answer(404, {"code": "payment_not_found"})

    def do_POST(self) -> None:
        bank = self.bank
        with bank.lock:
            bank.ledger.requests.append(("POST", self.path))
        if not self._authorized():
            return
        body = self._body()
        key = self.headers.get("Idempotency-Key")
        if not key:
            self._answer(400, {"code": "idempotency_key_required"})
            return
        time.sleep(bank.latency)
        path = urlsplit(self.path).path
        route = "reverse" if path.endswith("/reversal") else "submit"
        fault = bank.take_fault(route)
        kind = fault.kind if fault else None
        if kind == "refuse":
            self._answer(422, {"code": "insufficient_funds", "message": "not enough money"})
            return
        if kind == "error":
            self._answer(503, {"code": "unavailable"})
            return
        if kind == "slow":
            time.sleep(fault.delay)
        if route == "reverse":
            status, document = bank.reverse(path.split("/")[2], key, str(body.get("reason", "")))
        else:
            status, document = bank.create(key, body)
            if kind == "duplicate":  # the same request again, as a network would deliver it twice
                status, document = bank.create(key, body)
        if kind == "error_after_commit":
            self._answer(500, {"code": "internal_error"})
            return
        if kind == "timeout_after_commit":
            time.sleep(bank.hang_seconds)
            self.close_connection = True
            return
        self._answer(status, document)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    bank = ReferenceBank(latency=args.latency)
    bank.port = args.port
    bank.start()
    print(bank.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        bank.stop()


if __name__ == "__main__":
    main()
