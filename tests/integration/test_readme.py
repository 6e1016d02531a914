"""The README's walk-through, run as written against a real `verdict serve --demo`.

The commands come from README.md itself: every fenced block whose info string is
`sh readme-test` runs, in order, in one bash session (so variables carry over), with the working
directory a fresh copy of what a clone has (`examples/`) and the gateway's data dir `./.verdict`.
A block marked `json readme-output` or `text readme-output` right after one is what that block
prints, and is compared by shape: keys, codes, decisions and every stable value exactly;
action ids, hashes, signatures, addresses and times by their form only. Edit the README and this
test follows; let the README drift from what the gateway does and it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.process import GatewayProcess

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```$", re.M | re.S)
ELLIPSIS = "…"
# Values that differ on every run, by their form (compared as "same form", not equal).
VOLATILE_TEXT = [
    (re.compile(r"act_[0-9a-z]{26}"), "act_ID"),
    (re.compile(r"exe_[0-9a-z]{26}"), "exe_ID"),
    (re.compile(r"\bpay_[0-9a-f]+\b"), "pay_REFERENCE"),  # the demo bank's payment id
    (re.compile(r"0x[0-9a-fA-F]{40}\b"), "0xADDRESS"),
    (re.compile(r"0x[0-9a-fA-F]{64,}"), "0xHEX"),
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?: UTC|Z)"), "TIME"),
    (re.compile(r"\broot [0-9a-f]{64}\b"), "root HASH"),
    # the newest checkpoint when the bundle was asked for: background checkpoints come every 2 s
    (re.compile(r"checkpoint: size \d+"), "checkpoint: size N"),
    (re.compile(r"\d+ checkpoints verified"), "N checkpoints verified"),
    # the example's table of cases grows with the policy language; what matters is "0 failed"
    (re.compile(r"^\d+ passed, 0 failed$", re.M), "N passed, 0 failed"),
    (re.compile(r"\(\d+\.\d+ s\)"), "(T s)"),
    (re.compile(r"\bvk_[A-Za-z0-9_-]+"), "vk_TOKEN"),
]
VOLATILE_KEYS = {"issuedAt", "expiresAt", "signature", "signer", "expires_at", "created_at", "token"}


@dataclass
class Block:
    info: str
    body: str
    line: int


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    return [
        Block(m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(text)
    ]


def walkthrough() -> list[tuple[Block, Block | None]]:
    """(commands, the output shown after them or None), in README order."""
    blocks = readme_blocks()
    pairs = []
    for index, block in enumerate(blocks):
        if block.info != "sh readme-test":
            continue
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        shown = following if following is not None and following.info.endswith("readme-output") else None
        pairs.append((block, shown))
    return pairs


def normalize_text(text: str) -> list[str]:
    for pattern, replacement in VOLATILE_TEXT:
        text = pattern.sub(replacement, text)
    text = text.replace("Sign? [y/N]: y\n", "Sign? [y/N]: ").replace("Sign? [y/N]: ", "Sign? [y/N]:\n")
    return [line.rstrip() for line in text.strip().splitlines()]


def same_shape(shown, actual, where: str = "$") -> list[str]:
    """Where `actual` differs from the README's `shown`: `"…"` matches anything, a list ending in
    `"…"` matches any longer list with that start, volatile values match by form."""
    if shown == ELLIPSIS:
        return []
    if isinstance(shown, dict):
        if not isinstance(actual, dict):
            return [f"{where}: README shows an object, the gateway sent {type(actual).__name__}"]
        problems = []
        if set(shown) != set(actual):
            problems.append(f"{where}: keys differ: README {sorted(shown)}, gateway {sorted(actual)}")
        for key in set(shown) & set(actual):
            if key in VOLATILE_KEYS and isinstance(shown[key], str | int) and shown[key] != ELLIPSIS:
                if type(shown[key]) is not type(actual[key]) and actual[key] is not None:
                    problems.append(f"{where}.{key}: README {shown[key]!r}, gateway {actual[key]!r}")
                continue
            problems += same_shape(shown[key], actual[key], f"{where}.{key}")
        return problems
    if isinstance(shown, list):
        if not isinstance(actual, list):
            return [f"{where}: README shows a list, the gateway sent {actual!r}"]
        prefix = shown[:-1] if shown and shown[-1] == ELLIPSIS else shown
        if len(actual) < len(prefix) or (prefix is shown and len(actual) != len(shown)):
            return [f"{where}: README shows {len(shown)} items, the gateway sent {len(actual)}"]
        problems = []
        for index, item in enumerate(prefix):
            problems += same_shape(item, actual[index], f"{where}[{index}]")
        return problems
    if isinstance(shown, str) and isinstance(actual, str):
        if normalize_text(shown) != normalize_text(actual):
            return [f"{where}: README {shown!r}, gateway {actual!r}"]
        return []
    if shown != actual:
        return [f"{where}: README {shown!r}, gateway {actual!r}"]
    return []


def compare(shown: Block, actual: str) -> list[str]:
    if shown.info.startswith("json"):
        try:
            expected = json.loads(shown.body)
        except ValueError as exc:
            return [f"README line {shown.line}: the output shown is not JSON: {exc}"]
        try:
            got = json.loads(actual)
        except ValueError:
            return [f"README line {shown.line}: the gateway's answer is not JSON: {actual[:300]!r}"]
        return [f"README line {shown.line}: {problem}" for problem in same_shape(expected, got)]
    if normalize_text(shown.body) != normalize_text(actual):
        return [f"README line {shown.line}: output differs\n--- README\n{shown.body}\n--- actual\n{actual}"]
    return []


def run_walkthrough(pairs, cwd: Path, url: str) -> list[str]:
    """Run every block in one bash session; return each block's stdout."""
    marker = "@@README-BLOCK-END@@"
    venv_bin = str(Path(sys.executable).parent) + "/"
    script = ["set -euo pipefail"]
    for block, _ in pairs:
        body = block.body.replace("http://127.0.0.1:8000", url).replace(".venv/bin/", venv_bin)
        script += [body, f"echo; echo {marker}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERDICT_")}
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env["VERDICT_URL"] = url  # `verdict approve`'s default is http://127.0.0.1:8000, as in the README
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=cwd,
        env=env,
        input="y\n" * 20,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"the README's commands failed:\n{done.stdout}\n{done.stderr}"
    outputs = done.stdout.split(marker + "\n")
    assert len(outputs) == len(pairs) + 1, done.stdout
    return [output.strip("\n") for output in outputs[:-1]]


def test_readme_walkthrough_commands_are_marked():
    pairs = walkthrough()
    assert len(pairs) >= 5
    assert sum(shown is not None for _, shown in pairs) >= 5


@pytest.mark.slow
def test_readme_walkthrough_produces_the_output_shown(tmp_path):
    pairs = walkthrough()
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    env = {k: "" for k in os.environ if k.startswith("VERDICT_")}
    env.update({"VERDICT_DATA_DIR": str(tmp_path / ".verdict"), "VERDICT_ACCESS_LOG": "0"})
    server = GatewayProcess(env, "--demo", cwd=tmp_path).start(timeout=60)
    try:
        outputs = run_walkthrough(pairs, tmp_path, server.url)
    finally:
        log = server.stop()
    if os.environ.get("README_TEST_DUMP"):
        Path(os.environ["README_TEST_DUMP"]).write_text(
            "\n".join(
                f"### README line {block.line}\n{out}" for (block, _), out in zip(pairs, outputs, strict=True)
            )
        )
    problems = []
    for (_, shown), actual in zip(pairs, outputs, strict=True):
        if shown is not None:
            problems += compare(shown, actual)
    assert not problems, "\n".join(problems) + f"\n(gateway output:\n{log[-2000:]})"
    # the Quick start's promise: the start-up lines name the API docs and /health (and no secret)
    assert f"API docs {server.url}/schema" in log and f"health {server.url}/health" in log
    assert (tmp_path / ".verdict" / "admin.token").read_text().strip() not in log
    # nothing the walk-through writes lands outside the data dir
    assert sorted(p.name for p in tmp_path.iterdir()) == [".verdict", "examples"]
