"""Run the real `verdict` command as a subprocess, for tests that kill or start it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatewayProcess:
    def __init__(self, env: dict[str, str], *args: str, cwd: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "VERDICT_PORT": str(self.port)}
        self.args = args
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""
        # A file, not a pipe: the access log writes a line per request, and a pipe nobody reads
        # until the end fills up (64 KiB) and then blocks the gateway.
        self._output_file: typing.IO[str] | None = None

    def start(self, timeout: float = 30.0, ready: tuple[int, ...] = (200,)) -> GatewayProcess:
        """Start it and wait until `/health` answers one of `ready`."""
        self._output_file = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", *self.args],
            env=self.env,
            cwd=self.cwd,
            stdout=self._output_file,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.stop()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code in ready:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("gateway did not become healthy")

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown code runs."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.stop()

    def stop(self) -> str:
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._output_file is None or self._output_file.closed:
            return self.output
        with self._output_file:
            self._output_file.seek(0)
            self.output = self._output_file.read()
        return self.output
