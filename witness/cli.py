"""`python -m witness keygen | serve` (also `verdict witness …`): the witness's command line, with
the standard library only, so it runs where only `audit` and `crypto` are installed.

Exit status: 0 on success, 2 for unusable arguments (a key file that exists or is no Ed25519 key, a
bad key name, a logs file that is not `log <vkey>` lines).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from audit.cosignature import cosigner_vkey
from audit.errors import AuditError
from witness.server import Witness, make_server
from witness.state import WitnessState


class UsageError(Exception):
    """Arguments the witness cannot run with; the message says why."""


def load_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key of a PEM file. Raises `UsageError`."""
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise UsageError(f"{path}: not a PEM Ed25519 private key ({error})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path}: not an Ed25519 private key")
    return key


def keygen(path: Path, name: str) -> str:
    """Create a new key in `path` (mode 0600, never over an existing file); returns its cosigner vkey.
    Raises `UsageError`."""
    if path.exists():
        raise UsageError(f"{path} exists; not overwriting a key")
    key = Ed25519PrivateKey.generate()
    try:
        vkey = cosigner_vkey(name, key.public_key())  # checks the name before anything is written
    except AuditError as error:
        raise UsageError(str(error)) from None
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return vkey


def serve(key_path: Path, name: str, logs_path: Path, state_path: Path, host: str, port: int) -> None:
    """Answer POST /add-checkpoint until interrupted. Raises `UsageError` before listening."""
    witness = Witness(name, load_key(key_path), logs_path, WitnessState(state_path))
    try:
        witness.logs()  # a bad logs file fails now, not on the first request
    except (OSError, AuditError) as error:
        raise UsageError(f"{logs_path}: {error}") from None
    server = make_server(witness, host, port)
    print(f"witness {witness.vkey} listening on http://{host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        witness.state.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m witness", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("keygen", help="create the witness's key and print its cosigner vkey")
    new.add_argument("--key", required=True, type=Path, help="PEM file to create")
    new.add_argument("--name", required=True, help="the key name, e.g. witness.example.org/alice")
    run = commands.add_parser("serve", help="answer POST /add-checkpoint")
    run.add_argument("--key", required=True, type=Path)
    run.add_argument("--name", required=True, help="the key name given to keygen")
    run.add_argument(
        "--logs", required=True, type=Path, help="file of 'log <vkey>' lines (re-read on change)"
    )
    run.add_argument("--state", required=True, type=Path, help="SQLite file: the latest cosigned checkpoints")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=7380, help="0: any free port")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        if args.command == "keygen":
            print(keygen(args.key, args.name))
        else:
            serve(args.key, args.name, args.logs, args.state, args.host, args.port)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
