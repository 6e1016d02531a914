"""The shared signed-verdict vectors (tests/vectors/signed_verdict), checked by the Python client;
the TypeScript client's tests (clients/typescript/test) check the same file with viem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.client import VerdictInvalid, check_signed_verdict

ROOT = Path(__file__).resolve().parents[3]
FOLDER = ROOT / "tests" / "vectors" / "signed_verdict"
VECTORS = json.loads((FOLDER / "signed_verdict_vectors.json").read_text(encoding="utf-8"))


def published(keys: dict) -> dict:
    return {item["address"].lower(): item for item in keys["verdict_signers"]}


@pytest.mark.parametrize("vector", VECTORS, ids=[v["desc"] for v in VECTORS])
def test_python_client_checks_the_shared_vector(vector):
    given = vector["input"]
    if "want_err" in vector:
        with pytest.raises(VerdictInvalid):
            check_signed_verdict(
                given["signed_verdict"], given["action"], published(given["keys"]), now=given["now"]
            )
        return
    message = check_signed_verdict(
        given["signed_verdict"], given["action"], published(given["keys"]), now=given["now"]
    )
    assert message.action_id == vector["want"]["action_id"]
    assert "0x" + message.action_hash.hex() == vector["want"]["action_hash"]


def test_vectors_are_what_the_committed_script_writes():
    run = subprocess.run(
        [sys.executable, str(FOLDER / "gen_vectors.py")], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert json.loads(run.stdout) == VECTORS
