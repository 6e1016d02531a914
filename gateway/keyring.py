"""The signing keys a gateway holds in memory, and the data directory's key files.

A deployment has one verdict signer and one log key at a time, whatever its number of hosts:
the ones the database publishes (`gateway.services.published_keys`). This module holds what one
host made of them (`Keyring`) and the files a host may keep them in:

* `keys.json` (the manifest) records every key this data dir holds, with the time it became
  active (`not_before`) and, once rotated out, retired (`not_after`). Public data only.
* one 0600 file per private key (`verdict-signer.key`, `log-signer.pem`, then `…-2`, …);
* `admin.token`, on the host that created the deployment's bootstrap admin token.

The verdict signer can instead come from an eth-account keystore v3 file
(`VERDICT_SIGNER_KEYSTORE`, passphrase in `VERDICT_SIGNER_PASSPHRASE`). With a key-encryption key
(`gateway.sealing`) a host keeps no key file at all: it opens the keys the database holds sealed.

A host signs only with a key whose published window holds the present moment, and only while
its view of the published keys is fresh (`Lease`): so after a rotation on any host, no host signs
with the retired key past its `not_after`.
"""

from __future__ import annotations

import base64
import json
import math
import os
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, PublicFormat

from crypto.errors import KeyFileError
from crypto.keys import (
    generate_ed25519_key_file,
    generate_secp256k1_key_file,
    load_ed25519_key,
    load_secp256k1_key,
    write_secret_file,
)
from crypto.signing import LocalSigner
from gateway.clock import new_token
from gateway.errors import Unavailable

VERDICT_KEY_FILE = "verdict-signer.key"
LOG_KEY_FILE = "log-signer.pem"
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name
MANIFEST_FILE = "keys.json"
VERDICT, LOG = "verdict", "log"
KEYSTORE_ENV, PASSPHRASE_ENV = "VERDICT_SIGNER_KEYSTORE", "VERDICT_SIGNER_PASSPHRASE"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One signing key. `public` is the verdict signer's EIP-55 address, or the log key's raw
    Ed25519 public key in base64. `not_before` is empty while a rotation is under way (the key
    exists but is not scheduled yet); a scheduled `not_before` or `not_after` may lie in the future."""

    kind: str
    file: str
    public: str
    not_before: str
    not_after: str | None = None

    @property
    def status(self) -> str:
        """`next` (scheduled, not yet in force), `active`, or `retired`, at this moment."""
        now = time.time()
        if not self.not_before or parse_time(self.not_before) > now:
            return "next"
        return "active" if self.not_after is None or parse_time(self.not_after) > now else "retired"

    def log_public_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(self.public))


class KeysUnavailable(Unavailable):
    """This host may not sign now: its view of the published keys is stale, or the key in force
    is one it does not hold."""

    code = "signing_key_unavailable"


class Lease:
    """How fresh this host's view of the published keys is. `seconds` None: always fresh (the
    one-shot commands, which read the keys just before they sign)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.confirmed = time.monotonic()

    def confirm(self) -> None:
        self.confirmed = time.monotonic()

    def check(self) -> None:
        """Raises `KeysUnavailable` when the published keys were last read too long ago."""
        if self.seconds is not None and time.monotonic() - self.confirmed > self.seconds:
            raise KeysUnavailable(
                "this gateway could not confirm the published signing keys recently; retry shortly"
            )


def _until(record: KeyRecord) -> float:
    return math.inf if record.not_after is None else parse_time(record.not_after)


def _check_window(record: KeyRecord, until: float, lease: Lease) -> None:
    lease.check()
    if time.time() >= until:
        raise KeysUnavailable(f"the {record.kind} key {record.public} is retired; retry shortly")


class PublishedSigner(LocalSigner):
    """The verdict signer in force: an in-process key that refuses to sign outside its published
    window or with a stale lease (`KeysUnavailable`, a 503)."""

    __slots__ = ("_lease", "_until", "record")

    def __init__(self, private_key: bytes, record: KeyRecord, lease: Lease) -> None:
        super().__init__(private_key)
        self.record, self._lease, self._until = record, lease, _until(record)

    def sign_digest(self, digest: bytes) -> bytes:
        """Raises `KeysUnavailable` outside the key's window or with a stale lease."""
        _check_window(self.record, self._until, self._lease)
        return super().sign_digest(digest)

    def retired(self) -> PublishedSigner:
        """This key as one that refuses to sign from now on (its successor is not loadable here)."""
        return PublishedSigner(self._private_key.secret, _retired_now(self.record), self._lease)


class PublishedLogKey:
    """The log key in force, as `audit.note` uses it (`public_key()`, `sign(message)`), with the
    same refusals as `PublishedSigner`."""

    def __init__(self, private_key: Ed25519PrivateKey, record: KeyRecord, lease: Lease) -> None:
        self._key, self.record, self._lease, self._until = private_key, record, lease, _until(record)

    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def sign(self, message: bytes) -> bytes:
        """Raises `KeysUnavailable` outside the key's window or with a stale lease."""
        _check_window(self.record, self._until, self._lease)
        return self._key.sign(message)

    def retired(self) -> PublishedLogKey:
        """This key as one that refuses to sign from now on (its successor is not loadable here)."""
        return PublishedLogKey(self._key, _retired_now(self.record), self._lease)


def _retired_now(record: KeyRecord) -> KeyRecord:
    return replace(record, not_after=format_time(datetime.now(UTC)))


@dataclass(frozen=True, slots=True)
class Keyring:
    """What one host signs with, and the deployment's published keys (`history`, oldest first)."""

    verdict_signer: PublishedSigner
    log_key: PublishedLogKey
    admin_token: str | None  # None: another host holds the bootstrap admin token
    paths: dict[str, Path]
    created: tuple[str, ...]
    history: tuple[KeyRecord, ...]
    lease: Lease
    next_switch: float | None = None  # Unix time of the next scheduled switch, if any
    version: int = 0  # of the published keys (`key_set.version`) this keyring was built from
    secrets: Any = None  # `gateway.services.secrets_key.SecretsKeys`; None for the audit commands

    def active(self, kind: str) -> KeyRecord:
        return self.log_key.record if kind == LOG else self.verdict_signer.record

    def of_kind(self, kind: str) -> list[KeyRecord]:
        """Every scheduled key of `kind`, oldest first: retired, active, and next."""
        return [r for r in self.history if r.kind == kind and r.not_before]

    def retired_log_keys(self) -> list[Ed25519PublicKey]:
        """Public keys of the other log keys: rotated out ones still verify older checkpoints."""
        active = self.active(LOG).public
        return [r.log_public_key() for r in self.of_kind(LOG) if r.public != active]


# ---- the data directory


def ensure_local_keys(data_dir: Path) -> list[str]:
    """Create the data dir (0700) and, unless it has a manifest, a verdict and a log key with
    their manifest. Returns what it created. Raises `KeyFileError` as `crypto.keys` does."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    created = []
    if not (data_dir / MANIFEST_FILE).exists():
        if not (data_dir / VERDICT_KEY_FILE).exists():
            generate_secp256k1_key_file(data_dir / VERDICT_KEY_FILE)
            created.append("verdict_key")
        if not (data_dir / LOG_KEY_FILE).exists():
            generate_ed25519_key_file(data_dir / LOG_KEY_FILE)
            created.append("log_key")
        records = [_record_of(data_dir, VERDICT, VERDICT_KEY_FILE), _record_of(data_dir, LOG, LOG_KEY_FILE)]
        _write_manifest(data_dir, records)
    return created


def local_records(data_dir: Path, environ: Any = None) -> list[KeyRecord]:
    """The keys this data dir holds (none without a manifest), the keystore's signer in place of
    the verdict keys when `VERDICT_SIGNER_KEYSTORE` is set. Raises `KeyFileError` for a bad
    manifest or keystore."""
    env = os.environ if environ is None else environ
    records = read_manifest(data_dir) if (data_dir / MANIFEST_FILE).exists() else []
    if env.get(KEYSTORE_ENV):
        _, record = _from_keystore(Path(env[KEYSTORE_ENV]), env.get(PASSPHRASE_ENV))
        records = [r for r in records if r.kind != VERDICT] + [record]
    return records


def load_private(data_dir: Path, record: KeyRecord, environ: Any = None) -> bytes:
    """The raw private key (32 bytes) of a key this data dir holds, checked against `record`.

    Raises `KeyFileError` for a missing, unreadable or malformed file, or one holding another key.
    """
    env = os.environ if environ is None else environ
    if record.kind == VERDICT and env.get(KEYSTORE_ENV) and record.file == env[KEYSTORE_ENV]:
        signer, _ = _from_keystore(Path(record.file), env.get(PASSPHRASE_ENV))
        return signer._private_key.secret
    path = data_dir / record.file
    if record.kind == VERDICT:
        private = load_secp256k1_key(path)
        public = LocalSigner(private).address
    else:
        key = load_ed25519_key(path)
        private, public = (
            key.private_bytes(Encoding.Raw, PrivateFormat.Raw, _no_encryption()),
            public_b64(key),
        )
    if public != record.public:
        raise KeyFileError(f"{path} does not hold the key {MANIFEST_FILE} names")
    return private


def read_manifest(data_dir: Path) -> list[KeyRecord]:
    """Raises `KeyFileError` for a manifest that does not parse or lacks one active key a kind."""
    try:
        data = json.loads((data_dir / MANIFEST_FILE).read_text())
        records = [KeyRecord(**item) for item in data["keys"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise KeyFileError(f"{data_dir / MANIFEST_FILE} is not a key manifest: {error}") from None
    for kind in (VERDICT, LOG):
        if sum(1 for r in records if r.kind == kind and r.not_after is None) != 1:
            raise KeyFileError(f"{data_dir / MANIFEST_FILE} must have exactly one active {kind} key")
    return records


def new_key(data_dir: Path, kind: str) -> tuple[KeyRecord, bytes]:
    """Create the next key of `kind` in a new 0600 file, not scheduled yet. Returns its record
    (`not_before` empty until `activate`) and its raw private key."""
    number = len([r for r in read_manifest(data_dir) if r.kind == kind]) + 1
    if kind == VERDICT:
        name = f"verdict-signer-{number}.key"
        private = generate_secp256k1_key_file(data_dir / name)
        return KeyRecord(VERDICT, name, LocalSigner(private).address, ""), private
    name = f"log-signer-{number}.pem"
    key = generate_ed25519_key_file(data_dir / name)
    return KeyRecord(LOG, name, public_b64(key), ""), key.private_bytes(
        Encoding.Raw, PrivateFormat.Raw, _no_encryption()
    )


def generate_key(kind: str) -> tuple[KeyRecord, bytes]:
    """A new key of `kind` held only in memory (for sealing into the database)."""
    if kind == VERDICT:
        private = new_private_secp256k1()
        return KeyRecord(VERDICT, "", LocalSigner(private).address, ""), private
    key = Ed25519PrivateKey.generate()
    return KeyRecord(LOG, "", public_b64(key), ""), key.private_bytes(
        Encoding.Raw, PrivateFormat.Raw, _no_encryption()
    )


def new_private_secp256k1() -> bytes:
    import coincurve

    return coincurve.PrivateKey().secret


def activate(data_dir: Path, record: KeyRecord, at: datetime | None = None) -> KeyRecord:
    """Make `record` the active key of its kind from `at` (default now); the one before is retired
    at the same instant."""
    when = format_time(at or datetime.now(UTC))
    records = [
        replace(r, not_after=when) if r.kind == record.kind and r.not_after is None else r
        for r in read_manifest(data_dir)
        if r.public != record.public
    ]
    active = replace(record, not_before=when, not_after=None)
    _write_manifest(data_dir, [*records, active])
    return active


def read_admin_token(data_dir: Path) -> str | None:
    """The bootstrap admin token this data dir holds, or None. Raises `KeyFileError` for a file
    others can read, or an empty one."""
    path = data_dir / ADMIN_TOKEN_FILE
    return _read_secret(path) if path.exists() else None


def write_admin_token(data_dir: Path, token: str | None = None) -> str:
    """Write `admin.token` (0600) with `token` (default: a new one), replacing any, atomically.
    Returns the token. Raises `KeyFileError` when it cannot be written."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / ADMIN_TOKEN_FILE
    token = token or new_token()
    tmp = data_dir / f".{ADMIN_TOKEN_FILE}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    write_secret_file(tmp, token + "\n")
    os.replace(tmp, path)
    return token


def public_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def format_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _no_encryption():
    from cryptography.hazmat.primitives.serialization import NoEncryption

    return NoEncryption()


def _record_of(data_dir: Path, kind: str, name: str) -> KeyRecord:
    path = data_dir / name
    since = format_time(datetime.fromtimestamp(path.stat().st_mtime, UTC))
    if kind == VERDICT:
        return KeyRecord(kind, name, LocalSigner(load_secp256k1_key(path)).address, since)
    return KeyRecord(kind, name, public_b64(load_ed25519_key(path)), since)


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
    from crypto.ethaccount import Account

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
    since = format_time(datetime.fromtimestamp(path.stat().st_mtime, UTC))
    return signer, KeyRecord(VERDICT, str(path), signer.address, since)


def _read_secret(path: Path) -> str:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(f"{path} is readable by group or others (mode {mode:o}); chmod 600 it")
    text = path.read_text().strip()
    if not text:
        raise KeyFileError(f"{path} is empty")
    return text
