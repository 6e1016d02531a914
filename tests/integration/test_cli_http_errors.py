"""The `verdict` commands that talk HTTP fail in one line: a closed port, a refusal, a proxy's page."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.integration.process import GatewayProcess, free_port

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "examples" / "policy.yaml"


def run_verdict(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def approver_key(tmp_path_factory) -> Path:
    key = tmp_path_factory.mktemp("approver") / "me.key"
    assert run_verdict("keys", "approver", str(key), cwd=REPO).returncode == 0
    return key


def http_commands(url: str, key: Path) -> dict[str, list[str]]:
    """Every CLI command that talks to a gateway over HTTP, pointed at `url`."""
    return {
        "approve": ["approve", "act_0000", "--role", "cfo", "--key-file", str(key), "--url", url, "-y"],
        "reject": ["approve", "act_0000", "--role", "cfo", "--key-file", str(key), "--url", url, "-y", "--reject"],
        "policy simulate": ["policy", "simulate", "--url", url, "--token", "vk_x", "--tenant", "demo", str(POLICY)],
        "executions show": ["executions", "show", "exe_0000", "--url", url, "--token", "vk_x"],
        "events tail": ["events", "tail", "--tenant", "demo", "--url", url, "--token", "vk_x", "--no-follow"],
    }  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_cli_against_a_closed_port_prints_one_line_and_exits_1(approver_key, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # bound once and closed: nothing listens there
    for name, args in http_commands(url, approver_key).items():
        line = assert_one_line_error(run_verdict(*args, cwd=tmp_path), url, "connection refused", "--url")
        assert line.startswith("Error: cannot reach the gateway"), name


def test_cli_with_a_url_that_is_not_http_says_so(approver_key, tmp_path):
    for args in http_commands("ftp://127.0.0.1:1", approver_key).values():
        assert_one_line_error(run_verdict(*args, cwd=tmp_path), "not an http:// or https:// URL")


def test_cli_reports_the_gateways_problem_code_in_one_line(approver_key, tmp_path):
    server = GatewayProcess({"VERDICT_DATA_DIR": str(tmp_path / "data")}).start()
    try:
        commands = http_commands(server.url, approver_key)
        line = assert_one_line_error(run_verdict(*commands["approve"], cwd=tmp_path), "404 action_not_found")
        assert server.url in line
        assert_one_line_error(run_verdict(*commands["reject"], cwd=tmp_path), "404 action_not_found")
        assert_one_line_error(run_verdict(*commands["policy simulate"], cwd=tmp_path), "401 invalid_token")
        assert_one_line_error(run_verdict(*commands["executions show"], cwd=tmp_path), "401 invalid_token")
        assert_one_line_error(run_verdict(*commands["events tail"], cwd=tmp_path), "401 invalid_token")
    finally:
        server.stop()


class _ProxyErrorPage(http.server.BaseHTTPRequestHandler):
    """What a reverse proxy in front of a stopped gateway answers: 502 with an HTML page."""

    def _answer(self) -> None:
        body = b"<html>\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body>\n</html>\n"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


def test_cli_reports_a_non_json_error_page_in_one_line(approver_key, tmp_path):
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ProxyErrorPage)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}"
        for args in http_commands(url, approver_key).values():
            assert_one_line_error(run_verdict(*args, cwd=tmp_path), "502 http_error", "<html>")
    finally:
        proxy.shutdown()
        proxy.server_close()
