"""The data directory's secrets: verdict signing key, log signing key, bootstrap admin token.

Each lives in its own file, created once with mode 0600 and never printed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto.keys import (
    generate_ed25519_key_file,
    generate_secp256k1_key_file,
    load_ed25519_key,
    load_secp256k1_key,
    write_secret_file,
)
from crypto.signing import LocalSigner
from gateway.clock import new_token

VERDICT_KEY_FILE = "verdict-signer.key"
LOG_KEY_FILE = "log-signer.pem"
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name


@dataclass(frozen=True, slots=True)
class Keyring:
    verdict_signer: LocalSigner
    verdict_signer_since: datetime
    log_key: Ed25519PrivateKey
    admin_token: str
    paths: dict[str, Path]
    created: tuple[str, ...]


def load_keyring(data_dir: Path) -> Keyring:
    """Load the data directory's secrets, creating any that are missing.

    Raises `crypto.errors.KeyFileError` for a key file that is malformed or readable by
    group or others.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    paths = {
        "verdict_key": data_dir / VERDICT_KEY_FILE,
        "log_key": data_dir / LOG_KEY_FILE,
        "admin_token": data_dir / ADMIN_TOKEN_FILE,
    }
    created = []
    if not paths["verdict_key"].exists():
        generate_secp256k1_key_file(paths["verdict_key"])
        created.append("verdict_key")
    if not paths["log_key"].exists():
        generate_ed25519_key_file(paths["log_key"])
        created.append("log_key")
    if not paths["admin_token"].exists():
        write_secret_file(paths["admin_token"], new_token() + "\n")
        created.append("admin_token")
    admin_token = _read_secret(paths["admin_token"])
    since = datetime.fromtimestamp(paths["verdict_key"].stat().st_mtime, UTC).replace(microsecond=0)
    return Keyring(
        verdict_signer=LocalSigner(load_secp256k1_key(paths["verdict_key"])),
        verdict_signer_since=since,
        log_key=load_ed25519_key(paths["log_key"]),
        admin_token=admin_token,
        paths=paths,
        created=tuple(created),
    )


def _read_secret(path: Path) -> str:
    from crypto.errors import KeyFileError

    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(f"{path} is readable by group or others (mode {mode:o}); chmod 600 it")
    text = path.read_text().strip()
    if not text:
        raise KeyFileError(f"{path} is empty")
    return text
