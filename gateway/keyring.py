"""The data directory's secrets: verdict signing keys, log signing keys, bootstrap admin token.

Each secret lives in its own file, created once with mode 0600 and never printed. `keys.json`
(the manifest) records every signing key the gateway ever used, with the time it became active
(`not_before`) and, once rotated out, retired (`not_after`): the active key of each kind is the
one without `not_after`. Retired keys stay published, so verdicts and checkpoints signed before a
rotation still verify.

The verdict signer can instead come from an eth-account keystore v3 file
(`VERDICT_SIGNER_KEYSTORE`, passphrase in `VERDICT_SIGNER_PASSPHRASE`); that key is then managed
outside the gateway (rotate it by replacing the keystore), and the manifest is not used for it.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from crypto.errors import KeyFileError
from crypto.keys import (
    generate_ed25519_key_file,
    generate_secp256k1_key_file,
    load_ed25519_key,
    load_secp256k1_key,
    read_secret_file,
    write_secret_file,
)
from crypto.signing import LocalSigner
from gateway.clock import new_token

VERDICT_KEY_FILE = "verdict-signer.key"
LOG_KEY_FILE = "log-signer.pem"
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name
MANIFEST_FILE = "keys.json"
VERDICT, LOG = "verdict", "log"
KEYSTORE_ENV, PASSPHRASE_ENV = "VERDICT_SIGNER_KEYSTORE", "VERDICT_SIGNER_PASSPHRASE"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One signing key in the manifest. `public` is the verdict signer's EIP-55 address, or the
    log key's raw Ed25519 public key in base64."""

    kind: str
    file: str
    public: str
    not_before: str
    not_after: str | None = None

    @property
    def status(self) -> str:
        return "active" if self.not_after is None else "retired"

    def log_public_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(self.public))


@dataclass(frozen=True, slots=True)
class Keyring:
    verdict_signer: LocalSigner
    log_key: Ed25519PrivateKey
    admin_token: str
    paths: dict[str, Path]
    created: tuple[str, ...]
    history: tuple[KeyRecord, ...]

    def active(self, kind: str) -> KeyRecord:
        return _active(self.history, kind)

    def of_kind(self, kind: str) -> list[KeyRecord]:
        return [r for r in self.history if r.kind == kind]

    def retired_log_keys(self) -> list[Ed25519PublicKey]:
        """Public keys of the log keys rotated out: they still verify older checkpoints."""
        return [r.log_public_key() for r in self.of_kind(LOG) if r.not_after is not None]


def load_keyring(data_dir: Path, environ: dict[str, str] | None = None) -> Keyring:
    """Load the data directory's secrets, creating any that are missing (and the manifest).

    Raises `crypto.errors.KeyFileError` for a key file that is malformed or readable by group or
    others, a manifest that names a missing key, or a keystore that does not decrypt.
    """
    env = os.environ if environ is None else environ
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    paths = {
        "verdict_key": data_dir / VERDICT_KEY_FILE,
        "log_key": data_dir / LOG_KEY_FILE,
        "admin_token": data_dir / ADMIN_TOKEN_FILE,
    }
    created = []
    manifest = data_dir / MANIFEST_FILE
    if not manifest.exists():
        if not paths["verdict_key"].exists():
            generate_secp256k1_key_file(paths["verdict_key"])
            created.append("verdict_key")
        if not paths["log_key"].exists():
            generate_ed25519_key_file(paths["log_key"])
            created.append("log_key")
        _write_manifest(
            data_dir,
            [_record_of(data_dir, VERDICT, VERDICT_KEY_FILE), _record_of(data_dir, LOG, LOG_KEY_FILE)],
        )
    if not paths["admin_token"].exists():
        write_secret_file(paths["admin_token"], new_token() + "\n")
        created.append("admin_token")
    history = read_manifest(data_dir)
    verdict, log = _active(history, VERDICT), _active(history, LOG)
    paths["verdict_key"], paths["log_key"] = data_dir / verdict.file, data_dir / log.file
    signer = LocalSigner(load_secp256k1_key(paths["verdict_key"]))
    if signer.address != verdict.public:
        raise KeyFileError(f"{paths['verdict_key']} does not hold the key {MANIFEST_FILE} names")
    log_key = load_ed25519_key(paths["log_key"])
    if _public_b64(log_key) != log.public:
        raise KeyFileError(f"{paths['log_key']} does not hold the key {MANIFEST_FILE} names")
    if env.get(KEYSTORE_ENV):
        signer, record = _from_keystore(Path(env[KEYSTORE_ENV]), env.get(PASSPHRASE_ENV))
        paths["verdict_key"] = Path(env[KEYSTORE_ENV])
        history = [r for r in history if r.kind != VERDICT] + [record]
    return Keyring(
        verdict_signer=signer,
        log_key=log_key,
        admin_token=_read_secret(paths["admin_token"]),
        paths=paths,
        created=tuple(created),
        history=tuple(history),
    )


def read_manifest(data_dir: Path) -> list[KeyRecord]:
    try:
        data = json.loads((data_dir / MANIFEST_FILE).read_text())
        records = [KeyRecord(**item) for item in data["keys"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise KeyFileError(f"{data_dir / MANIFEST_FILE} is not a key manifest: {error}") from None
    for kind in (VERDICT, LOG):
        if sum(1 for r in records if r.kind == kind and r.not_after is None) != 1:
            raise KeyFileError(f"{data_dir / MANIFEST_FILE} must have exactly one active {kind} key")
    return records


def new_key(data_dir: Path, kind: str) -> tuple[KeyRecord, Any]:
    """Create the next key of `kind` (a new 0600 file), not active yet. Returns its record (with
    `not_before` unset until `activate`) and the key: a LocalSigner or an Ed25519PrivateKey."""
    number = len([r for r in read_manifest(data_dir) if r.kind == kind]) + 1
    if kind == VERDICT:
        name = f"verdict-signer-{number}.key"
        signer = LocalSigner(generate_secp256k1_key_file(data_dir / name))
        return KeyRecord(VERDICT, name, signer.address, ""), signer
    name = f"log-signer-{number}.pem"
    key = generate_ed25519_key_file(data_dir / name)
    return KeyRecord(LOG, name, _public_b64(key), ""), key


def activate(data_dir: Path, record: KeyRecord, at: datetime | None = None) -> KeyRecord:
    """Make `record` the active key of its kind; the one before is retired at the same instant."""
    when = _format_time(at or datetime.now(UTC))
    records = [
        replace(r, not_after=when) if r.kind == record.kind and r.not_after is None else r
        for r in read_manifest(data_dir)
    ]
    active = replace(record, not_before=when, not_after=None)
    _write_manifest(data_dir, [*records, active])
    return active


def manifest_stamp(data_dir: Path) -> int | None:
    """Changes whenever the manifest is rewritten (running gateways reload the keys then)."""
    try:
        return (data_dir / MANIFEST_FILE).stat().st_mtime_ns
    except OSError:
        return None


def _active(records: list[KeyRecord] | tuple[KeyRecord, ...], kind: str) -> KeyRecord:
    return next(r for r in reversed(records) if r.kind == kind and r.not_after is None)


def _record_of(data_dir: Path, kind: str, name: str) -> KeyRecord:
    path = data_dir / name
    since = _format_time(datetime.fromtimestamp(path.stat().st_mtime, UTC))
    if kind == VERDICT:
        return KeyRecord(kind, name, LocalSigner(load_secp256k1_key(path)).address, since)
    return KeyRecord(kind, name, _public_b64(load_ed25519_key(path)), since)


def _write_manifest(data_dir: Path, records: list[KeyRecord]) -> None:
    body = {
        "about": "Verdict signing keys: the active key of each kind has no not_after. Public data only.",
        "keys": [
            {
                "kind": r.kind,
                "file": r.file,
                "public": r.public,
                "not_before": r.not_before,
                "not_after": r.not_after,
            }
            for r in records
        ],
    }
    tmp = data_dir / f".{MANIFEST_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(body, indent=1) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, data_dir / MANIFEST_FILE)  # atomic: readers see the old or the new manifest


def _from_keystore(path: Path, passphrase: str | None) -> tuple[LocalSigner, KeyRecord]:
    from eth_account import Account

    if passphrase is None:
        raise KeyFileError(f"{KEYSTORE_ENV} is set but {PASSPHRASE_ENV} is not")
    try:
        keystore = json.loads(path.read_text())
        private_key = bytes(Account.decrypt(keystore, passphrase))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise KeyFileError(
            f"{path}: not a keystore v3 file this passphrase opens ({type(error).__name__})"
        ) from None
    signer = LocalSigner(private_key)
    since = _format_time(datetime.fromtimestamp(path.stat().st_mtime, UTC))
    return signer, KeyRecord(VERDICT, str(path), signer.address, since)


def _public_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def _format_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_secret(path: Path) -> str:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(f"{path} is readable by group or others (mode {mode:o}); chmod 600 it")
    text = path.read_text().strip()
    if not text:
        raise KeyFileError(f"{path} is empty")
    return text


WEBHOOK_KEY_FILE = "webhook-secrets.key"


def load_webhook_key(data_dir: Path) -> bytes:
    """The 256-bit key that seals webhook secrets at rest (`gateway.events.webhook_secrets`),
    from `webhook-secrets.key` beside the signing keys (0600, base64), created on first use.
    Every host of a deployment needs the same file to sign deliveries of the webhooks the
    others created. Raises KeyFileError for a file that is not owner-only or not 32 bytes."""
    path = data_dir / WEBHOOK_KEY_FILE
    if not path.exists():
        try:
            write_secret_file(path, base64.b64encode(os.urandom(32)).decode() + "\n")
        except KeyFileError:
            if not path.exists():  # (another process creating it at the same time is fine)
                raise
    try:
        key = base64.b64decode(read_secret_file(path).strip(), validate=True)
    except ValueError as exc:
        raise KeyFileError(f"{path} is not base64") from exc
    if len(key) != 32:
        raise KeyFileError(f"{path} must hold 32 bytes of key (base64)")
    return key
