"""The Python client's executions and `verdict executions show`, against `verdict serve --demo`
(whose demo bank is the demo tenant's rail): a newcomer's pending → succeeded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gateway.client import GatewayError, VerdictClient
from tests.integration.process import GatewayProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def demo(tmp_path):
    data_dir = tmp_path / "data"
    server = GatewayProcess({"VERDICT_DATA_DIR": str(data_dir)}, "--demo").start()
    try:
        agent, token = (data_dir / "demo-agent.token").read_text().split()
        yield server, agent, token
    finally:
        server.stop()


def show(server: GatewayProcess, token: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "executions", "show", *args, "--url", server.url],
        capture_output=True, text=True, timeout=60, env={**os.environ, "VERDICT_TOKEN": token},
    )  # fmt: skip


def test_execute_wait_and_show_on_the_demo_bank(demo):
    server, agent, token = demo
    action = {
        "type": "pay_invoice",
        "invoice_id": "inv_1",
        "amount": "1200.00",
        "asset": "USDC",
        "vendor": "acme-supplies",
    }
    with VerdictClient(server.url, token) as client:
        proposed = client.propose(agent, action)
        assert proposed["decision"] == "ALLOW"
        accepted = client.execute(proposed["action_id"], idempotency_key="k1")
        assert accepted["status"] == "pending" and accepted["rail"] == "bank_api"
        assert client.execute(proposed["action_id"], idempotency_key="k1") == accepted
        with pytest.raises(GatewayError) as caught:
            client.execute(proposed["action_id"])
        assert caught.value.code in ("already_executing", "already_executed")
        done = client.wait_for_execution(accepted["execution_id"], timeout=30)
        assert done["status"] == "succeeded" and done["reference"].startswith("pay_")
        record = client.get(proposed["action_id"])
        assert record["executions"][0]["execution_id"] == accepted["execution_id"]
    run = show(server, token, accepted["execution_id"])
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{accepted['execution_id']}  succeeded")
    assert f"reference  {done['reference']}" in run.stdout
    run = show(server, token, accepted["execution_id"], "--json")
    assert json.loads(run.stdout)["status"] == "succeeded"
    run = show(server, token, "exe_unknown")
    assert run.returncode == 1 and "execution_not_found" in run.stderr
