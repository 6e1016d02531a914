"""eth-account is imported only through crypto.ethaccount, which keeps the recursion limit.

py_ecc (under eth-account and web3) raises the limit to 100000 at import; with it, C parsers
crash on deep input instead of raising RecursionError. Each check runs in a fresh interpreter,
since this one has imported eth-account long ago.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

VERIFY = """
from crypto import DECISION_ALLOW, Domain, LocalSigner, VerdictMessage, sign_verdict, verify_verdict_signature
signer = LocalSigner(bytes(range(1, 33)))
domain = Domain(chain_id=1, verifying_contract="0x" + "00" * 20)
message = VerdictMessage(action_id="act_1", action_hash=b"\\x11" * 32, tenant="acme", agent="agent-7",
                         action_type="http.post", decision=DECISION_ALLOW, policy_version=3,
                         policy_hash=b"\\x22" * 32, issued_at=1_700_000_000, expires_at=1_700_000_060)
signed = sign_verdict(signer, domain, message)
assert "eth_account" not in sys.modules  # signing needs none of it
verify_verdict_signature(signed.typed_data, signed.signature, signer.address)
assert "eth_account" in sys.modules  # verifying rebuilds the digest with eth-account's encoder
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    program = f"import sys\nsys.setrecursionlimit(1234)\n{code}\nassert sys.getrecursionlimit() == 1234, sys.getrecursionlimit()\n"
    return subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "code",
    [
        "import crypto.ethaccount",
        VERIFY,
        "import crypto.eip1271\nimport web3",
        "import gateway.rails",
    ],
    ids=["ethaccount", "first-verification", "eip1271-then-web3", "rails"],
)
def test_importing_eth_account_through_crypto_keeps_the_recursion_limit(code: str) -> None:
    done = run(code)
    assert done.returncode == 0, done.stderr


def test_crypto_audit_and_the_witness_do_not_import_eth_account() -> None:
    # half a second of every command's start-up that never verifies a typed-data signature
    done = run(
        "import crypto, audit, witness.cli, gateway.client, gateway.cli\n"
        "assert 'eth_account' not in sys.modules and 'py_ecc' not in sys.modules"
    )
    assert done.returncode == 0, done.stderr
