"""Building the Go programs of tests/go/ with Debian's golang-go and golang-golang-x-mod-dev (GOPATH
mode, offline): checks by golang.org/x/mod/sumdb, an implementation written outside this project."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

GOPATH = Path("/usr/share/gocode")
SOURCES = Path(__file__).resolve().parents[1] / "go"


def build_go(name: str, directory: Path) -> Path:
    """Build tests/go/<name>.go into `directory`; skips the test when Go or x/mod is not installed."""
    if shutil.which("go") is None or not (GOPATH / "src/golang.org/x/mod/sumdb/tlog").is_dir():
        pytest.skip("Go and golang-golang-x-mod-dev are not installed")
    binary = directory / name
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOCACHE": str(directory / "cache")}
    source = SOURCES / f"{name}.go"
    subprocess.run(["go", "build", "-o", str(binary), str(source)], check=True, env=env, capture_output=True)
    return binary
