"""The demo bank `verdict serve --demo` starts beside the gateway: a tiny payments API on a loopback
port that speaks what `gateway.rails.bank_api` expects and settles every payment at once.

It keeps its ledger in memory (a restart forgets it), honours idempotency keys (one payment per
key, a repeat gets the same payment) and accepts one API key, so a newcomer can watch an execution
go pending → succeeded and roll it back. It is not a test double: tests use the reference bank in
tests/bank.py, which can also misbehave.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class DemoBank:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.lock = threading.Lock()
        self.payments: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}
        self.reversals: dict[str, dict[str, Any]] = {}
        self.server: ThreadingHTTPServer | None = None

    def start(self, host: str = "127.0.0.1") -> str:
        """Serve on a free loopback port in a daemon thread; returns the base URL."""
        bank = self

        class Handler(_Handler):
            pass

        Handler.bank = bank
        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True, name="demo-bank").start()
        return f"http://{host}:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def pay(self, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if key in self.by_key:
                return 200, self.payments[self.by_key[key]]
            payment = {"id": "pay_" + secrets.token_hex(8), "status": "succeeded", "amount": str(body.get("amount")),
                       "currency": str(body.get("currency")), "reference": body.get("reference")}  # fmt: skip
            self.payments[payment["id"]] = payment
            self.by_key[key] = payment["id"]
            return 201, payment

    def reverse(self, payment_id: str, key: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if key in self.reversals:
                return 200, self.reversals[key]
            if payment_id not in self.payments:
                return 404, {"code": "payment_not_found"}
            reversal = {"id": "rev_" + secrets.token_hex(8), "status": "succeeded", "payment_id": payment_id}
            self.reversals[key] = reversal
            return 201, reversal


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bank: DemoBank

    def setup(self) -> None:
        super().setup()
        # one answer is two writes (head, body): without this, Nagle and delayed ACKs add ~40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *_: Any) -> None:
        pass

    def _answer(self, status: int, document: dict[str, Any]) -> None:
        raw = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _authorized(self) -> bool:
        if not secrets.compare_digest(self.headers.get("Authorization", ""), f"Bearer {self.bank.api_key}"):
            self._answer(401, {"code": "unauthorized"})
            return False
        return True

    def do_GET(self) -> None:
        if not self._authorized():
            return
        parts = urlsplit(self.path)
        with self.bank.lock:
            if parts.path == "/payments":
                key = parse_qs(parts.query).get("idempotency_key", [""])[0]
                found = [self.bank.payments[self.bank.by_key[key]]] if key in self.bank.by_key else []
                self._answer(200, {"payments": found})
                return
            payment = self.bank.payments.get(parts.path.removeprefix("/payments/"))
        self._answer(200, payment) if payment else self._answer(404, {"code": "payment_not_found"})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        key = self.headers.get("Idempotency-Key")
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = None
        if not key or not isinstance(body, dict):
            self._answer(400, {"code": "bad_request"})
            return
        path = urlsplit(self.path).path
        if path.endswith("/reversal"):
            self._answer(*self.bank.reverse(path.split("/")[2], key))
        elif path == "/payments":
            self._answer(*self.bank.pay(key, body))
        else:
            self._answer(404, {"code": "not_found"})
