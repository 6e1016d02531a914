"""The gateway against a tlog-witness nobody here wrote: `aics-witness` from PyPI (c2sp.org/tlog-witness,
cosignature/v1), run as its own process beside one of ours, under a policy that needs both.

aics-witness needs Python 3.12; .ci/run installs it into ~/.cache/verdict-aics-witness when a
Python 3.12 is on the machine. The test skips otherwise.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from audit.proof import consistency_proof
from audit.rfc6962 import hash_leaf
from audit.witness_policy import parse_policy, verify_witnessed
from tests.integration.helpers import bearer, make_world, read_log
from tests.integration.process import free_port
from tests.integration.test_witnesses import forked, gateway, propose_and_prove, request, size_of
from tests.integration.witnesses import WitnessProcess

AICS = Path(
    os.environ.get("VERDICT_AICS_WITNESS", Path.home() / ".cache/verdict-aics-witness/bin/aics-witness")
)


class AicsWitness:
    def __init__(self, directory: Path) -> None:
        if not AICS.exists():
            pytest.skip(f"aics-witness is not installed at {AICS} (.ci/run installs it where Python 3.12 is)")
        directory.mkdir(parents=True)
        self.config, self.port = directory / "witness.json", free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        init = self._run("init", "--name", "witness.aics.test/w1", "--listen", f"127.0.0.1:{self.port}")
        self.vkey = init.stdout.strip().splitlines()[-1]
        self.proc: subprocess.Popen[str] | None = None

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        run = subprocess.run([str(AICS), *args[:1], "-c", str(self.config), *args[1:]],
                             capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert run.returncode == 0, run.stderr
        return run

    def watch(self, origin: str, vkey: str) -> None:
        self._run("add-log", "--origin", origin, "--vkey", vkey)

    def start(self) -> None:
        with (self.config.parent / "serve.log").open("w") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([str(AICS), "serve", "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.config.parent / "serve.log").read_text()
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("aics-witness did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def add_checkpoint(self, body: str) -> httpx.Response:
        return httpx.post(f"{self.url}/add-checkpoint", content=body.encode(), timeout=30)


async def test_an_outside_witness_cosigns_and_refuses_a_fork(backend, tmp_path) -> None:
    aics = AicsWitness(tmp_path / "aics")
    ours = WitnessProcess(tmp_path / "ours", "witness.test/ours")
    policy_file = tmp_path / "policy"
    policy_file.write_text(
        f"witness aics {aics.vkey} {aics.url}\nwitness ours {ours.vkey} {ours.url}\n"
        "group both all aics ours\nquorum both\n"
    )
    try:
        async with gateway(backend, policy_file) as client:
            world = await make_world(client)
            audit = client.app_state.audit
            aics.watch(audit.origin("acme"), audit.vkey("acme"))
            ours.watch(audit.vkey("acme"))
            aics.start()
            ours.start()
            policy = parse_policy(f"log {audit.vkey('acme')}\n" + policy_file.read_text())
            for _ in range(3):  # from size 0, then with consistency proofs
                status, note = await propose_and_prove(client, world)
                assert status == 200, note
                assert set(verify_witnessed(note, policy).cosigned) == {"aics", "ours"}
            size = size_of(note)
            leaves = [hash_leaf(raw) for raw in await read_log(client, world)]
            signer, origin = audit.signer("acme"), audit.origin("acme")
            _, same_size = forked(leaves, size - 1, size, signer, origin)
            r = aics.add_checkpoint(request(size, [], same_size))
            # refused; the spec says 409 for this case (ours answers 409), aics-witness 0.1.0 answers 422
            assert r.status_code in (409, 422), r.text
            branch, longer = forked(leaves, size - 1, size + 2, signer, origin)
            r = aics.add_checkpoint(request(size, consistency_proof(branch, size, size + 2), longer))
            assert r.status_code == 422, r.text
            r = await client.get("/v1/tenants/acme/log/checkpoint", headers=bearer(world.auditor))
            assert set(verify_witnessed(r.text, policy).cosigned) == {"aics", "ours"}
    finally:
        aics.stop()
        ours.stop()
