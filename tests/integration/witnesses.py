"""Witnesses as real processes (`verdict witness serve`) on loopback ports, for tests."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import typing
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from audit.cosignature import cosigner_vkey
from tests.integration.process import free_port


class WitnessProcess:
    """One witness: its key file, logs file and state file in `directory`, a fixed loopback port."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory, self.name = directory, name
        directory.mkdir(parents=True, exist_ok=True)
        self.key_file, self.logs_file, self.state_file = (
            directory / "key.pem",
            directory / "logs",
            directory / "state.db",
        )
        self.logs_file.write_text("# the logs this witness watches\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        self._output: typing.IO[str] | None = None
        self.new_key()

    def new_key(self) -> str:
        """A fresh Ed25519 key (a rotation, when it had one); returns its cosigner vkey."""
        key = Ed25519PrivateKey.generate()
        self.key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        self.vkey = cosigner_vkey(self.name, key.public_key())
        return self.vkey

    def watch(self, log_vkey: str) -> None:
        with self.logs_file.open("a") as out:
            out.write(f"log {log_vkey}\n")

    def start(self, timeout: float = 60.0) -> WitnessProcess:
        self._output = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        args = [
            "--key",
            self.key_file,
            "--name",
            self.name,
            "--logs",
            self.logs_file,
            "--state",
            self.state_file,
        ]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "witness",
                "serve",
                *map(str, args),
                "--port",
                str(self.port),
            ],
            stdout=self._output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"witness exited early:\n{self.stop()}")
            try:
                if httpx.get(f"{self.url}/vkey", timeout=1).text.strip() == self.vkey:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"witness did not start:\n{self.stop()}")

    def stop(self) -> str:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc = None
        if self._output is None:
            return ""
        self._output.seek(0)
        output = self._output.read()
        self._output.close()
        self._output = None
        return output

    def add_checkpoint(self, body: str) -> httpx.Response:
        return httpx.post(f"{self.url}/add-checkpoint", content=body.encode(), timeout=30)


def policy_text(witnesses: list[WitnessProcess], quorum: int) -> str:
    lines = [f"witness {w.name.split('/')[-1]} {w.vkey} {w.url}" for w in witnesses]
    members = " ".join(w.name.split("/")[-1] for w in witnesses)
    return "\n".join([*lines, f"group witnesses {quorum} {members}", "quorum witnesses", ""])
