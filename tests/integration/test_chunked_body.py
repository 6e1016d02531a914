"""A malformed chunked body sent to a real `verdict serve` answers 400, not 500 (issue 11, item 5).

Raw sockets: HTTP clients refuse to send broken framing. Granian hands the app `http.disconnect`
for it, which Litestar's body reader called a server error.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.integration.process import GatewayProcess


@pytest.fixture
def server(backend) -> Iterator[tuple[GatewayProcess, str]]:
    process = GatewayProcess(backend.env()).start()
    try:
        yield process, (backend.data_dir / "admin.token").read_text().strip()
    finally:
        process.stop()


def exchange(port: int, head: str, body: bytes) -> tuple[int, dict]:
    """Send one request as raw bytes; return the status and the JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {data!r}"
            data += chunk
        header_text, _, rest = data.partition(b"\r\n\r\n")
        lines = header_text.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed inside the answer"
            rest += chunk
    return int(lines[0].split()[1]), json.loads(rest[:length]) if length else {}


def chunked_head(method: str, path: str, token: str) -> str:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    )


@pytest.mark.parametrize(
    "framing",
    [
        b"zz\r\n{}\r\n0\r\n\r\n",  # a chunk size that is not hex
        b"ffffffffffffffffffffff\r\n{}\r\n0\r\n\r\n",  # beyond any integer
        b"2\r\n{}XX0\r\n\r\n",  # chunk data not followed by CRLF
    ],
)
def test_a_malformed_chunked_body_answers_400(server, framing):
    process, admin = server
    status, problem = exchange(process.port, chunked_head("POST", "/v1/tenants", admin), framing)
    assert (status, problem.get("code")) == (400, "incomplete_body"), problem
    status, problem = exchange(process.port, chunked_head("GET", "/v1/tenants/nobody", admin), framing)
    assert (status, problem.get("code")) == (400, "incomplete_body"), problem
    # still serving, and nothing was created
    body = json.dumps({"id": "chunky", "name": "Chunky"}).encode()
    framed = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    status, created = exchange(process.port, chunked_head("POST", "/v1/tenants", admin), framed)
    assert status == 201, created
