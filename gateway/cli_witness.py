"""`verdict witness keygen | serve`: run a c2sp.org/tlog-witness witness (the `witness` package),
for example on an auditor's own machine."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)


def _load_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise click.ClickException(f"{path}: not a PEM Ed25519 private key ({error})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise click.ClickException(f"{path}: not an Ed25519 private key")
    return key


@click.group("witness")
def witness_group() -> None:
    """A transparency-log witness (c2sp.org/tlog-witness): cosigns checkpoints it verified."""


@witness_group.command("keygen")
@click.option("--key", "key_path", type=click.Path(path_type=Path), required=True, help="PEM file to create")
@click.option("--name", required=True, help="the witness's key name, e.g. witness.example.org/alice")
def keygen(key_path: Path, name: str) -> None:
    """Create the witness's Ed25519 key and print its cosigner vkey (for policies)."""
    from audit.cosignature import cosigner_vkey

    if key_path.exists():
        raise click.ClickException(f"{key_path} exists; not overwriting a key")
    key = Ed25519PrivateKey.generate()
    vkey = cosigner_vkey(name, key.public_key())  # checks the name before anything is written
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    click.echo(vkey)


@witness_group.command("serve")
@click.option("--key", "key_path", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--name", required=True, help="the key name given to keygen")
@click.option("--logs", "logs_path", type=click.Path(path_type=Path, exists=True), required=True,
              help="file of 'log <vkey>' lines: the logs to witness (re-read when it changes)")  # fmt: skip
@click.option("--state", "state_path", type=click.Path(path_type=Path), required=True,
              help="SQLite file: the latest cosigned checkpoint per log")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=7380, show_default=True, help="0: any free port")
def serve(key_path: Path, name: str, logs_path: Path, state_path: Path, host: str, port: int) -> None:
    """Answer POST /add-checkpoint until interrupted."""
    from witness.server import Witness, make_server
    from witness.state import WitnessState

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    witness = Witness(name, _load_key(key_path), logs_path, WitnessState(state_path))
    witness.logs()  # a bad logs file fails now, not on the first request
    server = make_server(witness, host, port)
    click.echo(f"witness {witness.vkey} listening on http://{host}:{server.server_address[1]}")
    sys.stdout.flush()  # a supervisor reading a pipe or file sees it now
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        witness.state.close()
