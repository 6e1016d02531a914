"""The Python client and `verdict approve` against a real `verdict serve --demo` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from eth_account import Account

from gateway.client import GatewayError, VerdictClient, VerdictInvalid
from tests.integration.process import GatewayProcess


def pay(amount: str, invoice: str) -> dict:
    return {
        "type": "pay_invoice",
        "invoice_id": invoice,
        "amount": amount,
        "asset": "USDC",
        "vendor": "acme-supplies",
    }


def approve_cli(server: GatewayProcess, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "approve", *args, "--url", server.url, "--yes"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def demo(tmp_path):
    data_dir = tmp_path / "data"
    server = GatewayProcess({"VERDICT_DATA_DIR": str(data_dir)}, "--demo").start()
    try:
        agent, token = (data_dir / "demo-agent.token").read_text().split()
        yield server, data_dir, agent, token
    finally:
        server.stop()


def test_propose_wait_approve_with_the_cli_and_verify(demo):
    server, data_dir, agent, token = demo
    key_file = data_dir / "demo-cfo.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    with VerdictClient(server.url, token) as client:
        action = pay("7800.00", "inv_9001")
        answer = client.propose(agent, action, rationale="monthly supplies")
        assert answer["decision"] == "ESCALATE"
        action_id = answer["action_id"]
        with pytest.raises(TimeoutError):
            client.wait_for_approval(action_id, timeout=0.3, poll_interval=0.1)
        with pytest.raises(GatewayError) as caught:
            client.verdict(action_id)
        assert caught.value.code == "verdict_not_available" and caught.value.status == 409

        done = approve_cli(server, action_id, "--role", "cfo", "--key-file", str(key_file), "--comment", "ok")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "APPROVE as cfo: " in done.stdout and "is allowed (ALLOW)" in done.stdout

        record = client.wait_for_approval(action_id, timeout=10)
        assert record["status"] == "allowed" and record["approvals"][0]["comment"] == "ok"
        signed = record["signed_verdict"]
        assert client.verdict(action_id) == signed
        message = client.verify_verdict(signed, action)
        assert message.action_id == action_id and message.agent == agent

        # what an executor must refuse
        with pytest.raises(VerdictInvalid, match="another action"):
            client.verify_verdict(signed, {**action, "amount": "78000.00"})
        with pytest.raises(VerdictInvalid, match="expired"):
            client.verify_verdict(signed, action, now=message.expires_at)
        forged = {
            **signed,
            "signature": signed["signature"][:-4]
            + ("00" if signed["signature"][-4:-2] != "00" else "01")
            + signed["signature"][-2:],
        }
        with pytest.raises(VerdictInvalid):
            client.verify_verdict(forged, action)
        stranger = Account.from_key("0x" + "77" * 32)
        from crypto.eip712 import parse_verdict_typed_data
        from crypto.signing import LocalSigner, sign_verdict

        domain, parsed = parse_verdict_typed_data(signed["typed_data"])
        own = sign_verdict(LocalSigner(bytes(stranger.key)), domain, parsed)
        with pytest.raises(VerdictInvalid, match="not one of the gateway's verdict signers"):
            client.verify_verdict({**signed, "signature": own.signature, "signer": own.signer}, action)

        # the CLI reports refusals with their code and exits non-zero
        again = approve_cli(server, action_id, "--role", "cfo", "--key-file", str(key_file))
        assert again.returncode == 1 and "action_not_pending" in again.stderr


def test_reject_and_a_keystore_key(demo):
    server, data_dir, agent, token = demo
    key = (data_dir / "demo-cfo.key").read_text().strip()
    keystore = data_dir / "cfo-keystore.json"
    keystore.write_text(json.dumps(Account.encrypt(key, "correct horse", iterations=2)))
    keystore.chmod(0o600)
    with VerdictClient(server.url, token) as client:
        first = client.propose(agent, pay("7800.00", "inv_9002"))["action_id"]
        second = client.propose(agent, pay("7900.00", "inv_9003"))["action_id"]
        bad = approve_cli(
            server,
            first,
            "--role",
            "cfo",
            "--key-file",
            str(keystore),
            env={"VERDICT_KEY_PASSPHRASE": "wrong"},
        )
        assert bad.returncode == 1 and "passphrase" in bad.stderr
        ok = approve_cli(
            server,
            first,
            "--role",
            "cfo",
            "--key-file",
            str(keystore),
            env={"VERDICT_KEY_PASSPHRASE": "correct horse"},
        )
        assert ok.returncode == 0, ok.stderr
        no = approve_cli(
            server,
            second,
            "--role",
            "cfo",
            "--key-file",
            str(data_dir / "demo-cfo.key"),
            "--reject",
            "--comment",
            "duplicate",
        )
        assert no.returncode == 0 and "REJECT as cfo" in no.stdout and "is rejected (DENY)" in no.stdout
        assert client.wait_for_approval(second, timeout=5)["status"] == "rejected"
        # a role the action does not need
        third = client.propose(agent, pay("8000.00", "inv_9004"))["action_id"]
        wrong = approve_cli(server, third, "--role", "ceo", "--key-file", str(data_dir / "demo-cfo.key"))
        assert wrong.returncode == 1 and "role_not_required" in wrong.stderr
        assert client.cancel(third)["status"] == "cancelled"


def test_keys_approver_creates_a_key_file(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "keys", "approver", str(tmp_path / "me.key")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    key = (tmp_path / "me.key").read_text().strip()
    assert Account.from_key(key).address == out.stdout.strip()
    assert oct((tmp_path / "me.key").stat().st_mode & 0o777) == "0o600"
