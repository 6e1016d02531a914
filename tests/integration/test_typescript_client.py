"""The TypeScript client (clients/typescript), run by pytest so that `make test` runs it.

- its generated types match the committed OpenAPI document, and that document is the one the
  gateway serves (regenerate: clients/typescript/scripts/export_openapi.py, `npm run generate`);
- its `node --test` suite runs against a real `verdict serve` (both backends), on the happy
  path and the refusals, with a reference bank as the rail;
- `npm pack` makes a tarball that installs into an empty project, imports and type-checks.

The node tests need `npm ci` in clients/typescript (.ci/run does it); without node_modules they
skip, unless VERDICT_REQUIRE_NODE=1 (CI), where they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from eth_account import Account

from tests.bank import ReferenceBank
from tests.integration.execution_helpers import FAST_EXECUTOR, configure_bank_rail
from tests.integration.helpers import bearer, make_world
from tests.integration.process import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "typescript"
NODE_MODULES = PACKAGE / "node_modules"
APPROVER_KEY = "0x" + "11" * 32  # well-known test keys; never use them for anything real
STRANGER_KEY = "0x" + "55" * 32

# One worker runs this module (`make test` runs pytest-xdist with --dist loadgroup): `built`
# compiles into the one clients/typescript/dist, which a second worker would rewrite under the first.
pytestmark = pytest.mark.xdist_group("typescript-dist")

needs_node = pytest.mark.skipif(
    not (NODE_MODULES / "typescript").is_dir() and os.environ.get("VERDICT_REQUIRE_NODE") != "1",
    reason="run `npm ci` in clients/typescript (VERDICT_REQUIRE_NODE=1 makes this a failure)",
)


def run(*args: str, cwd: Path = PACKAGE, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        list(args),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    failed = done.stdout.find("not ok")  # the first failure of a node --test run, else the end
    shown = done.stdout[failed : failed + 6000] if failed >= 0 else done.stdout[-4000:]
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{shown}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def built() -> Path:
    """The package compiled (tsc) into clients/typescript/dist."""
    run("node", str(NODE_MODULES / "typescript" / "bin" / "tsc"), "-p", "tsconfig.json")
    return PACKAGE / "dist"


def test_committed_openapi_document_is_the_served_one():
    sys.path.insert(0, str(PACKAGE / "scripts"))
    try:
        from export_openapi import openapi_text
    finally:
        sys.path.remove(str(PACKAGE / "scripts"))
    committed = (PACKAGE / "openapi.json").read_text(encoding="utf-8")
    assert json.loads(committed) == json.loads(openapi_text()), (
        "the gateway's OpenAPI document changed: run clients/typescript/scripts/export_openapi.py,"
        " then `npm run generate` in clients/typescript"
    )


@needs_node
def test_generated_types_are_current(tmp_path):
    out = tmp_path / "schema.ts"
    run(
        "node",
        str(NODE_MODULES / "openapi-typescript" / "bin" / "cli.js"),
        "openapi.json",
        "--output",
        str(out),
    )
    assert out.read_text(encoding="utf-8") == (PACKAGE / "src" / "schema.ts").read_text(encoding="utf-8"), (
        "src/schema.ts is not what openapi-typescript makes of openapi.json: run `npm run generate`"
    )


async def seed(url: str, admin: str, bank: ReferenceBank) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        http.app_state = SimpleNamespace(keyring=SimpleNamespace(admin_token=admin))  # what make_world reads
        world = await make_world(http)
        r = await http.post(
            f"/v1/tenants/{world.tenant}/approvers",
            json={"address": Account.from_key(APPROVER_KEY).address, "roles": ["cfo"], "name": "Carla CFO"},
            headers=bearer(world.tenant_admin),
        )
        assert r.status_code == 201, r.text
        await configure_bank_rail(http, world, bank)
    return {
        "VERDICT_URL": url,
        "VERDICT_TENANT": world.tenant,
        "VERDICT_AGENT": world.agent,
        "VERDICT_AGENT_TOKEN": world.agent_token,
        "VERDICT_TENANT_ADMIN_TOKEN": world.tenant_admin,
        "VERDICT_AUDITOR_TOKEN": world.auditor,
        "VERDICT_APPROVER_KEY": APPROVER_KEY,
        "VERDICT_STRANGER_KEY": STRANGER_KEY,
    }


@needs_node
async def test_node_suite_against_a_real_gateway(backend, built):
    with ReferenceBank() as bank:
        server = GatewayProcess({**backend.env(), **FAST_EXECUTOR}).start()
        try:
            admin = (backend.data_dir / "admin.token").read_text().strip()
            env = await seed(server.url, admin, bank)
            output = run("node", "--test", "--test-reporter=tap", "test/", env=env)
        finally:
            log = server.stop()
    assert "# fail 0" in output and "# SKIP" not in output, output + log[-4000:]  # the suite ran whole
    assert len(bank.ledger.payments) >= 1  # the suite's execution reached the bank


@needs_node
def test_npm_pack_installs_into_an_empty_project(built, tmp_path):
    packed = json.loads(run("npm", "pack", "--json", "--ignore-scripts", "--pack-destination", str(tmp_path)))
    tarball = tmp_path / packed[0]["filename"]
    files = {item["path"] for item in packed[0]["files"]}
    assert {"dist/index.js", "dist/index.d.ts", "dist/schema.d.ts", "package.json"} <= files, files
    assert not any(path.startswith(("src/", "test/", "node_modules/")) for path in files), files
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "empty", "private": True, "type": "module"}))
    run("npm", "install", "--no-audit", "--no-fund", "--prefer-offline", str(tarball), cwd=project)
    vector = json.loads((ROOT / "tests/vectors/signed_verdict/signed_verdict_vectors.json").read_text())[0]
    code = CHECK_TS.replace("VECTOR", json.dumps(vector))
    (project / "check.ts").write_text(code)
    run("node", str(NODE_MODULES / "typescript" / "bin" / "tsc"), "--noEmit", "--strict", "--module", "nodenext",
        "--moduleResolution", "nodenext", "--target", "es2022", "--skipLibCheck", "check.ts", cwd=project)  # fmt: skip
    (project / "check.mjs").write_text(
        code.replace(": string", "").replace(": VerdictClient", "").replace(" as any", "")
    )
    assert run("node", "check.mjs", cwd=project).strip() == vector["want"]["action_id"]


CHECK_TS = """\
import { VerdictClient, checkSignedVerdict, isProblem } from "@verdict-gateway/client";

const vector = VECTOR as any;
const client: VerdictClient = new VerdictClient("http://127.0.0.1:9");
const given = vector.input;
const message = await checkSignedVerdict(given.signed_verdict, given.action, given.keys.verdict_signers, given.now);
const id: string = message.actionId;
if (isProblem(new Error("x"), "verdict_expired") || !client.baseUrl) throw new Error("unexpected");
console.log(id);
"""
