"""`verdict serve` as a listener: a taken port is refused, and slow or idle clients are cut
(issue 11 items 4 and 7). Real processes and real sockets, every wait bounded."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.integration.process import GatewayProcess

pytestmark = pytest.mark.slow


def serve_on(port: int, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `verdict serve` on `port`, expecting it to exit by itself (within 30 s)."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", *args],
        env={**GatewayProcess(env).env, "VERDICT_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_second_server_on_a_taken_port_refuses_to_start(backend, tmp_path):
    """Regression (issue 11): the second server started too, and the kernel spread requests
    between the two gateways."""
    if backend.name != "sqlite":
        pytest.skip("about the listener; the database does not matter")
    first = GatewayProcess(backend.env()).start()
    try:
        other_dir = {**backend.env(), "VERDICT_DATA_DIR": str(tmp_path / "other")}
        done = serve_on(first.port, other_dir)
        assert done.returncode != 0
        assert "address in use" in done.stderr + done.stdout
        assert f"127.0.0.1:{first.port}" in done.stderr + done.stdout
        # the first one still answers every request, alone
        for _ in range(5):
            assert httpx.get(f"{first.url}/health", timeout=5).status_code == 200
    finally:
        first.stop()


def test_a_port_taken_by_any_other_program_is_refused(backend):
    if backend.name != "sqlite":
        pytest.skip("about the listener; the database does not matter")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        done = serve_on(listener.getsockname()[1], backend.env())
    assert done.returncode != 0
    assert "address in use" in done.stderr + done.stdout


def test_sharing_a_port_is_allowed_when_asked_for(backend):
    if backend.name != "sqlite":
        pytest.skip("about the listener; the database does not matter")
    first = GatewayProcess(backend.env()).start()
    second = GatewayProcess(backend.env(), "--reuse-port")
    second.port, second.url = first.port, first.url
    second.env["VERDICT_PORT"] = str(first.port)
    try:
        second.start()
        assert second.proc is not None and second.proc.poll() is None
    finally:
        second.stop()
        first.stop()


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` within `seconds` (reading and discarding any answer)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except OSError:  # reset
            return True
    return False


SLOW = {
    "VERDICT_HEADER_TIMEOUT": "2",
    "VERDICT_KEEPALIVE_TIMEOUT": "2",
    "VERDICT_BODY_TIMEOUT": "3",
    "VERDICT_MAX_CONNECTIONS": "64",
    "VERDICT_ACCESS_LOG": "0",
}


def test_idle_and_slow_header_connections_are_closed_and_the_server_keeps_serving(backend):
    """Regression (issue 11): 100 idle sockets and 100 slow-header connections stayed open for
    30 s. Here 100 idle, 100 that trickle a header line a second and 100 that stop mid-header
    are all closed within a few header timeouts, and a normal client is served meanwhile."""
    if backend.name != "sqlite":
        pytest.skip("about the HTTP server; the database does not matter")
    server = GatewayProcess({**backend.env(), **SLOW}).start()
    sockets: list[socket.socket] = []
    try:
        for kind in ("idle", "drip", "partial"):
            for _ in range(100):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                if kind != "idle":
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                sockets.append(sock)
        began = time.monotonic()
        for second in range(3):  # the drippers go on sending
            for sock in sockets[100:200]:
                try:
                    sock.sendall(f"X-Slow-{second}: 1\r\n".encode())
                except OSError:
                    pass
            time.sleep(1)
        # 300 slow clients over a cap of 64 per worker: they are cut in rounds of the timeout
        still_open = [s for s in sockets if not closed_within(s, max(0.1, 20 - (time.monotonic() - began)))]
        assert still_open == [], f"{len(still_open)} of 300 slow connections still open"
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    finally:
        for sock in sockets:
            sock.close()
        server.stop()


def test_an_idle_keep_alive_connection_is_closed(backend):
    if backend.name != "sqlite":
        pytest.skip("about the HTTP server; the database does not matter")
    server = GatewayProcess({**backend.env(), **SLOW}).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            began = time.monotonic()
            assert closed_within(sock, 10)
            assert time.monotonic() - began < 5  # the 2 s keep-alive timeout, not the default
    finally:
        server.stop()


def test_a_trickled_body_gets_408_and_the_connection_is_closed(backend):
    if backend.name != "sqlite":
        pytest.skip("about the HTTP server; the database does not matter")
    server = GatewayProcess({**backend.env(), **SLOW}).start()
    try:
        admin = (backend.data_dir / "admin.token").read_text().strip()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + admin.encode() + b"\r\nContent-Length: 100\r\n\r\n{"
            )
            answer = b""
            began = time.monotonic()
            sock.settimeout(1)
            while time.monotonic() - began < 15 and b"\r\n\r\n" not in answer:
                try:
                    sock.sendall(b" ")
                    answer += sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"connection: close" in answer.lower()
            assert closed_within(sock, 5)
    finally:
        server.stop()
