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
