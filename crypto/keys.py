"""Key and secret files: created owner-only (0600), refused when anyone else can read them.

Formats:

* secp256k1 (the verdict signer): one line, ``0x`` followed by 64 hex digits.
* Ed25519 (checkpoint signer): unencrypted PKCS #8 PEM (RFC 5208, RFC 8410).

Files are created with ``O_CREAT | O_EXCL`` and mode 0600 in the same system call,
so there is no window in which the secret is readable by others, and an existing
file (or a symlink planted in its place) is never overwritten.
"""

from __future__ import annotations

import os
import re
import stat

import coincurve
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto.errors import KeyFileError

__all__ = [
    "generate_ed25519_key_file",
    "generate_secp256k1_key_file",
    "load_ed25519_key",
    "load_secp256k1_key",
    "read_secret_file",
    "write_secret_file",
]

# SEC 2 §2.4.1: the order n of the secp256k1 base point; private keys lie in [1, n-1].
_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_SECP256K1_LINE = re.compile(rb"0x([0-9a-fA-F]{64})\r?\n?")
_MAX_SECRET_FILE_BYTES = 64 * 1024


def write_secret_file(path: str | os.PathLike[str], text: str) -> None:
    """Create ``path`` with mode 0600 and write ``text`` (UTF-8) to it, then fsync it.

    The file must not exist yet. If writing fails the partial file is removed.

    Raises:
        KeyFileError: ``path`` already exists (as a file or a symlink), or cannot be
            created or written.
    """
    data = text.encode()
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except FileExistsError as error:
        raise KeyFileError(f"{os.fspath(path)}: refusing to overwrite an existing file") from error
    except OSError as error:
        raise KeyFileError(f"{os.fspath(path)}: cannot create file: {error.strerror}") from error
    try:
        # The umask can only have removed bits; make the owner's read/write explicit.
        os.fchmod(descriptor, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    except OSError as error:
        os.close(descriptor)
        os.unlink(path)
        raise KeyFileError(f"{os.fspath(path)}: cannot write file: {error.strerror}") from error
    os.close(descriptor)


def read_secret_file(path: str | os.PathLike[str]) -> bytes:
    """Return the bytes of an owner-only regular file.

    Permissions are checked on the opened descriptor, so the file read is the
    file checked.

    Raises:
        KeyFileError: the file is missing, unreadable, not a regular file, larger
            than 64 KiB, or its mode grants group or others any access (mode & 0o077).
    """
    name = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO planted at the path must not hang; it is rejected below.
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError as error:
        raise KeyFileError(f"{name}: file does not exist") from error
    except OSError as error:
        raise KeyFileError(f"{name}: cannot open file: {error.strerror}") from error
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise KeyFileError(f"{name}: not a regular file")
        mode = stat.S_IMODE(status.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"{name}: mode {mode:04o} lets group or others access this secret; run `chmod 600 {name}`"
            )
        chunks = []
        remaining = _MAX_SECRET_FILE_BYTES + 1
        while remaining > 0 and (chunk := os.read(descriptor, remaining)):
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
    except OSError as error:
        raise KeyFileError(f"{name}: cannot read file: {error.strerror}") from error
    finally:
        os.close(descriptor)
    if len(data) > _MAX_SECRET_FILE_BYTES:
        raise KeyFileError(f"{name}: larger than {_MAX_SECRET_FILE_BYTES} bytes, not a key file")
    return data


def generate_secp256k1_key_file(path: str | os.PathLike[str]) -> bytes:
    """Create a new secp256k1 key file at ``path`` and return the 32-byte private key.

    Raises:
        KeyFileError: as for :func:`write_secret_file`.
    """
    private_key = coincurve.PrivateKey().secret  # os.urandom, rejection-sampled into [1, n-1]
    write_secret_file(path, "0x" + private_key.hex() + "\n")
    return private_key


def load_secp256k1_key(path: str | os.PathLike[str]) -> bytes:
    """Return the 32-byte secp256k1 private key stored at ``path``.

    Raises:
        KeyFileError: as for :func:`read_secret_file`, or the content is not one
            ``0x`` + 64-hex line, or the key is 0 or not below the curve order.
    """
    name = os.fspath(path)
    match = _SECP256K1_LINE.fullmatch(read_secret_file(path))
    if match is None:
        raise KeyFileError(f"{name}: malformed secp256k1 key file (expected one line of 0x + 64 hex digits)")
    private_key = bytes.fromhex(match.group(1).decode())
    if not 0 < int.from_bytes(private_key, "big") < _SECP256K1_ORDER:
        raise KeyFileError(f"{name}: secp256k1 private key is out of range [1, n-1]")
    return private_key


def generate_ed25519_key_file(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Create a new Ed25519 key file (PKCS #8 PEM) at ``path`` and return the key.

    Raises:
        KeyFileError: as for :func:`write_secret_file`.
    """
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    write_secret_file(path, pem.decode("ascii"))
    return private_key


def load_ed25519_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Return the Ed25519 private key stored at ``path`` as unencrypted PKCS #8 PEM.

    Raises:
        KeyFileError: as for :func:`read_secret_file`, or the content is not an
            unencrypted PEM private key, or the key is not Ed25519.
    """
    name = os.fspath(path)
    data = read_secret_file(path)
    try:
        private_key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        # ValueError: not PEM / bad DER; TypeError: encrypted; UnsupportedAlgorithm: unknown key type.
        message = f"{name}: malformed Ed25519 key file (expected unencrypted PKCS #8 PEM)"
        raise KeyFileError(message) from error
    if not isinstance(private_key, Ed25519PrivateKey):
        raise KeyFileError(f"{name}: holds a {type(private_key).__name__}, expected an Ed25519 private key")
    return private_key
