"""`verdict serve` and `verdict serve --demo` as a newcomer runs them."""

from __future__ import annotations

import stat

import httpx
from eth_account import Account
from eth_account.messages import encode_typed_data

from tests.integration.process import GatewayProcess


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_creates_0600_secrets_and_prints_no_secret(tmp_path):
    data_dir = tmp_path / "data"
    server = GatewayProcess({"VERDICT_DATA_DIR": str(data_dir)}).start()
    output = server.stop()
    files = {p.name: p for p in data_dir.iterdir()}
    for name in ("verdict-signer.key", "log-signer.pem", "admin.token"):
        assert mode(files[name]) == 0o600, name
        assert str(files[name]) in output
    assert "verdict.db" in files
    for name in ("verdict-signer.key", "admin.token"):
        secret = files[name].read_text().strip()
        assert secret not in output
    key = files["verdict-signer.key"].read_text().strip()
    assert Account.from_key(key).address in output


def test_demo_walkthrough_gets_a_signed_verdict(tmp_path):
    data_dir = tmp_path / "data"
    server = GatewayProcess({"VERDICT_DATA_DIR": str(data_dir)}, "--demo").start()
    try:
        token_file = data_dir / "demo-agent.token"
        assert mode(token_file) == 0o600
        agent, token = token_file.read_text().split()
        headers = {"Authorization": f"Bearer {token}"}
        body = {
            "action": {
                "type": "pay_invoice",
                "invoice_id": "inv_8230",
                "amount": "1200.00",
                "asset": "USDC",
                "vendor": "acme-supplies",
            }
        }
        out = httpx.post(f"{server.url}/v1/agents/{agent}/propose", json=body, headers=headers).json()
        assert out["decision"] == "ALLOW"
        verdict = out["signed_verdict"]
        signer = Account.recover_message(
            encode_typed_data(full_message=verdict["typed_data"]), signature=verdict["signature"]
        )
        assert signer == httpx.get(f"{server.url}/v1/keys").json()["verdict_signers"][0]["address"]
        body["action"]["amount"] = "7800.00"
        assert (
            httpx.post(f"{server.url}/v1/agents/{agent}/propose", json=body, headers=headers).json()[
                "decision"
            ]
            == "ESCALATE"
        )
        body["action"]["vendor"] = "evil-corp"
        assert (
            httpx.post(f"{server.url}/v1/agents/{agent}/propose", json=body, headers=headers).json()[
                "decision"
            ]
            == "DENY"
        )
    finally:
        output = server.stop()
    assert "curl" in output and token not in output
    # a second start finds the demo instead of seeding it again
    server = GatewayProcess({"VERDICT_DATA_DIR": str(data_dir)}, "--demo").start()
    output = server.stop()
    assert "Demo tenant 'demo' found" in output
    assert token_file.read_text().split()[1] == token


def test_example_policy_and_demo_policy_agree():
    from pathlib import Path

    from gateway.demo import DEMO_POLICY
    from policy import load_policy

    example = Path(__file__).parents[2] / "examples" / "policy.yaml"
    assert (
        load_policy(example.read_bytes(), "application/yaml").hash
        == load_policy(DEMO_POLICY.encode(), "application/yaml").hash
    )
