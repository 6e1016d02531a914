"""The README's on-chain example runs as written: a real gateway, the in-process chain, the
VerdictAccount; ALLOW moves the tokens, the replayed verdict reverts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_onchain_demo_moves_funds_once_and_the_replay_reverts(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERDICT_")}
    run = subprocess.run(
        [sys.executable, "examples/onchain_demo.py"], cwd=ROOT, env={**env, "TMPDIR": str(tmp_path)},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert re.fullmatch(r"propose transfer of 250 TUSD to 0x[0-9a-fA-F]{40}: ALLOW", lines[2]), lines
    assert re.fullmatch(r"execute: succeeded in transaction 0x[0-9a-f]{64} \(block \d+\)", lines[3]), lines
    assert lines[4] == "payee now holds 250.000000 TUSD; account 9750.000000"
    assert lines[5] == "replay the same verdict on chain: reverts with VerdictReplayed"
    assert lines[6] == "propose 5,000 TUSD to the same payee: ESCALATE; 10 TUSD to an unknown address: DENY"
    assert lines[-1] == "OK"
