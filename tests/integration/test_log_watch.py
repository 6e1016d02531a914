"""`verdict audit watch` and `verdict audit mirror` against a real `verdict serve`, as an auditor's
cron job runs them: new checkpoints pass; a rollback or a fork (a kept checkpoint the log's key signed
that the log does not extend) is reported with exit 1; the mirror fetches only new tiles, and Go's
sumdb/tlog reads it (tests/go/read_tiles.go).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import httpx
from click.testing import CliRunner

from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.note import new_signer
from crypto.keys import load_ed25519_key
from gateway.cli import main
from gateway.ledger import EntryDraft, Ledger, Unit
from gateway.storage import open_database
from tests.integration.helpers import bearer, make_world, pay
from tests.integration.process import GatewayProcess
from tests.integration.test_tiles import go_check, go_tiles  # noqa: F401 (the Go binary fixture)


async def seed(backend, count: int) -> None:
    """Append `count` entries through the ledger, from this process (the server runs in another)."""
    db = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)
    await db.open()
    ledger = Ledger(db)
    try:
        if count:
            await ledger.append(
                "acme", Unit([EntryDraft("test.note", "test", {"n": n}) for n in range(count)])
            )
    finally:
        await ledger.close()
        await db.close()


def cli(*args: str, token: str) -> SimpleNamespace:
    """`verdict audit …`, run in this process (the gateway it talks to is a real server process)."""
    result = CliRunner().invoke(main, ["audit", *args], env={"VERDICT_TOKEN": token}, catch_exceptions=False)
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


async def test_watch_and_mirror_from_the_command_line(backend, tmp_path: Path, go_tiles) -> None:  # noqa: F811
    server = GatewayProcess({**backend.env(), "VERDICT_CHECKPOINT_INTERVAL": "0"}).start(timeout=60)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            admin = (backend.data_dir / "admin.token").read_text().strip()
            client.app_state = SimpleNamespace(keyring=SimpleNamespace(admin_token=admin))
            world = await make_world(client)
            keys = (await client.get("/v1/tenants/acme/keys", headers=bearer(world.auditor))).json()
            vkey = keys["log"]["vkey"]
            url, state, mirror = f"{server.url}/v1/tenants/acme", tmp_path / "watch.json", tmp_path / "mirror"
            for round_ in range(3):
                r = await client.post(
                    "/v1/agents/ap-bot/propose", json=pay("1.00"), headers=bearer(world.agent_token)
                )
                assert r.status_code == 201, r.text
                await seed(backend, 150 * round_)  # the log crosses a tile boundary on the way
                await client.post("/v1/tenants/acme/audit/checkpoint", headers=bearer(world.auditor))
                run = cli("watch", url, "--vkey", vkey, "--state", str(state), token=world.auditor)
                assert run.returncode == 0 and run.stdout.startswith("OK  "), run.stderr
                run = cli("mirror", url, str(mirror), "--vkey", vkey, token=world.auditor)
                assert run.returncode == 0 and "mirrored" in run.stdout, run.stderr
                assert go_check(go_tiles, vkey, mirror).startswith("ok")
            run = cli("mirror", url, str(mirror), "--vkey", vkey, token=world.auditor)
            assert "(0 tiles fetched)" in run.stdout, run.stdout  # nothing new: nothing fetched

            # what the watcher kept was signed by the log's key but the log does not extend it
            size = int(json.loads(state.read_text())["checkpoint"].split("\n")[1])
            signer = new_signer(
                "localhost/verdict/acme", load_ed25519_key(backend.data_dir / "log-signer.pem")
            )
            for kept, problem in ((size - 1, "fork"), (size + 10, "rollback")):
                note = sign_checkpoint(Checkpoint("localhost/verdict/acme", kept, b"\x01" * 32), signer)
                state.write_text(json.dumps({"checkpoint": note}))
                run = cli("watch", url, "--vkey", vkey, "--state", str(state), token=world.auditor)
                assert run.returncode == 1 and f"PROBLEM {problem}" in run.stderr, run.stderr
                assert json.loads(state.read_text())["checkpoint"] == note  # a problem keeps what was kept
            # another log's key: the signature is the problem
            run = cli(
                "watch",
                url,
                "--vkey",
                vkey.replace("acme", "globex", 1),
                "--state",
                str(tmp_path / "s"),
                token=world.auditor,
            )
            assert run.returncode != 0
    finally:
        server.stop()
