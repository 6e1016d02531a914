"""The offline verifier runs on an auditor's laptop: a virtual environment holding only `audit/`,
`crypto/` and what they declare they need — no Litestar, asyncpg, aiosqlite, granian or policy code.

The bare environment is built from this one without the network: a fresh venv whose site-packages
holds links to exactly the distributions that `eth-account`, `coincurve`, `cryptography`,
`msgspec` and `rfc8785` require (transitively, markers evaluated), and to the two packages.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from tests.unit.audit.synthetic import demo_log

ROOT = Path(__file__).resolve().parents[2]
AUDITOR_NEEDS = ["eth-account", "coincurve", "cryptography", "msgspec", "rfc8785"]
SERVER_ONLY = {"litestar", "asyncpg", "aiosqlite", "granian", "click", "web3", "cel-python", "pyyaml"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str]) -> set[str]:
    """The distributions `roots` need at run time, in this environment."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = _normal(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.distribution(name).requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def top_level_paths(name: str) -> set[Path]:
    """What a distribution put into site-packages (packages, modules, extension modules, .libs)."""
    dist = metadata.distribution(name)
    base = Path(dist.locate_file(""))
    paths = set()
    for file in dist.files or []:
        first = Path(file).parts[0]
        if first.endswith((".dist-info", ".pth")) or first in ("..", "__pycache__"):
            continue
        paths.add(base / first)
    paths.add(Path(dist._path))  # its .dist-info, so importlib.metadata works there too
    return paths


def make_bare_env(where: Path) -> Path:
    venv.EnvBuilder(with_pip=False).create(where)
    site = next(where.glob("lib/python3*/site-packages"))
    needed = closure(AUDITOR_NEEDS)
    assert not needed & SERVER_ONLY, needed & SERVER_ONLY
    for name in sorted(needed):
        for path in top_level_paths(name):
            target = site / path.name
            if path.exists() and not target.exists():
                target.symlink_to(path)
    for package in ("audit", "crypto"):
        (site / package).symlink_to(ROOT / package)
    return where / "bin" / "python"


def bare_environ() -> dict[str, str]:
    """The caller's environment without PYTHONPATH, which would lend the bare venv this checkout."""
    return {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "PYTHONHOME")}


def test_the_offline_verifier_runs_without_the_server_dependencies(tmp_path):
    python = make_bare_env(tmp_path / "bare")
    env = bare_environ()
    for module in ("litestar", "asyncpg", "aiosqlite", "granian", "gateway", "policy", "web3"):
        run = subprocess.run(
            [python, "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
            env=env,
        )
        assert run.returncode != 0 and "ModuleNotFoundError" in run.stderr, (module, run.stderr)

    log = demo_log()
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(log.bundle([3, 4])))
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"verdict_signers": [{"address": log.verdict_signer.address}]}))
    command = [python, "-m", "audit", "verify", str(bundle), "--vkey", log.vkey, "--keys", str(keys)]
    run = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    assert "meaning verified: 1 action.proposed, 1 verdict.issued" in run.stdout
    # and it still fails what it must fail, there
    data = json.loads(bundle.read_text())
    data["entries"][0]["index"] = 2
    bundle.write_text(json.dumps(data))
    run = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp_path, env=env)
    assert run.returncode == 1 and run.stderr.startswith("FAILED inclusion: entry 2")


def test_crypto_imports_in_the_bare_environment(tmp_path):
    # crypto.eip1271 imports web3 only when a contract wallet is asked, so the module itself loads.
    python = make_bare_env(tmp_path / "bare")
    code = "import crypto, crypto.eip1271; print(crypto.__file__)"
    run = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, check=False, cwd=tmp_path, env=bare_environ()
    )
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()).resolve().parent == ROOT / "crypto"


def test_the_bare_environment_is_really_bare():
    """The closure is computed, not listed: it must hold the auditor's needs and nothing of the server."""
    needed = closure(AUDITOR_NEEDS)
    assert {"eth-account", "coincurve", "cryptography", "msgspec", "rfc8785"} <= needed
    assert not needed & SERVER_ONLY
    assert sys.version_info >= (3, 11)


def test_the_witness_runs_without_the_server_dependencies(tmp_path):
    """`python -m witness` on an auditor's machine: keygen, serve, and a cosignature that verifies."""
    import time

    import httpx
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from audit.checkpoint import Checkpoint, sign_checkpoint
    from audit.cosignature import parse_cosigner_vkey, verify_cosignatures
    from audit.note import new_signer, open_note, parse_vkey, vkey
    from tests.integration.process import free_port

    python = make_bare_env(tmp_path / "bare")
    (next((tmp_path / "bare").glob("lib/python3*/site-packages")) / "witness").symlink_to(ROOT / "witness")
    env = bare_environ()
    run = subprocess.run(
        [python, "-m", "witness", "keygen", "--key", "w.pem", "--name", "witness.test/laptop"],
        capture_output=True, text=True, check=False, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    cosigner = parse_cosigner_vkey(run.stdout.strip())
    log_key = Ed25519PrivateKey.generate()
    (tmp_path / "logs").write_text(f"log {vkey('example.test/log', log_key.public_key())}\n")
    port = free_port()
    args = ["--key", "w.pem", "--name", "witness.test/laptop", "--logs", "logs", "--state", "w.db"]
    with (tmp_path / "serve.log").open("w") as out:
        server = subprocess.Popen(
            [python, "-m", "witness", "serve", *args, "--port", str(port)], cwd=tmp_path, env=env, stdout=out, stderr=out
        )  # fmt: skip
    try:
        note = sign_checkpoint(
            Checkpoint("example.test/log", 3, b"\x05" * 32), new_signer("example.test/log", log_key)
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.post(
                    f"http://127.0.0.1:{port}/add-checkpoint", content=f"old 0\n\n{note}", timeout=10
                )
                break
            except httpx.HTTPError:
                assert server.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "serve.log"
                ).read_text()
                time.sleep(0.1)
        assert r.status_code == 200, r.text
        opened = open_note(note + r.text, [parse_vkey(vkey("example.test/log", log_key.public_key()))])
        assert "witness.test/laptop" in verify_cosignatures(opened, [cosigner])
    finally:
        server.terminate()
        server.wait(timeout=30)
