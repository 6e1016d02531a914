"""Key and secret files: 0600 on creation, refused when group/others can access them, strict formats."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto import (
    KeyFileError,
    LocalSigner,
    generate_ed25519_key_file,
    generate_secp256k1_key_file,
    load_ed25519_key,
    load_secp256k1_key,
    read_secret_file,
    write_secret_file,
)

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def plant(path: Path, content: str | bytes, mode: int = 0o600) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(mode)
    return path


@pytest.fixture
def permissive_umask():
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_secp256k1_key_file_round_trip(tmp_path: Path, permissive_umask: None) -> None:
    path = tmp_path / "signer.key"
    private_key = generate_secp256k1_key_file(path)
    assert mode_of(path) == 0o600
    assert path.read_text() == "0x" + private_key.hex() + "\n"
    assert load_secp256k1_key(path) == private_key
    assert LocalSigner(load_secp256k1_key(str(path))).address.startswith("0x")


def test_ed25519_key_file_round_trip(tmp_path: Path, permissive_umask: None) -> None:
    path = tmp_path / "checkpoint.pem"
    private_key = generate_ed25519_key_file(path)
    assert mode_of(path) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")  # PKCS #8, unencrypted
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert load_ed25519_key(path).public_key().public_bytes(*raw) == private_key.public_key().public_bytes(
        *raw
    )


def test_write_secret_file_is_0600_even_under_a_strict_umask(tmp_path: Path) -> None:
    previous = os.umask(0o277)
    try:
        write_secret_file(tmp_path / "token", "s3cr3t\n")
    finally:
        os.umask(previous)
    assert mode_of(tmp_path / "token") == 0o600
    assert read_secret_file(tmp_path / "token") == b"s3cr3t\n"


def test_write_secret_file_never_overwrites(tmp_path: Path) -> None:
    existing = plant(tmp_path / "existing", "keep me")
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_secret_file(existing, "new")
    assert existing.read_text() == "keep me"
    with pytest.raises(KeyFileError):
        generate_secp256k1_key_file(existing)
    assert existing.read_text() == "keep me"


def test_write_secret_file_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(KeyFileError):
        write_secret_file(tmp_path / "link", "secret")
    assert not target.exists()


def test_write_secret_file_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot create"):
        write_secret_file(tmp_path / "missing" / "key", "secret")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o610, 0o601, 0o700 | 0o040])
@pytest.mark.parametrize(
    "load", [load_secp256k1_key, load_ed25519_key, read_secret_file], ids=["secp256k1", "ed25519", "secret"]
)
def test_load_refuses_files_group_or_others_can_access(tmp_path: Path, mode: int, load) -> None:
    path = tmp_path / "key"
    generate_secp256k1_key_file(path) if load is load_secp256k1_key else generate_ed25519_key_file(path)
    path.chmod(mode)
    with pytest.raises(KeyFileError) as raised:
        load(path)
    assert str(path) in str(raised.value)
    assert f"{mode:04o}" in str(raised.value)


@pytest.mark.parametrize("mode", [0o400, 0o600, 0o700])
def test_load_accepts_owner_only_modes(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "key"
    private_key = generate_secp256k1_key_file(path)
    path.chmod(mode)
    assert load_secp256k1_key(path) == private_key


@pytest.mark.parametrize("load", [load_secp256k1_key, load_ed25519_key, read_secret_file])
def test_load_refuses_missing_file_and_directory(tmp_path: Path, load) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load(tmp_path / "missing")
    (tmp_path / "directory").mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load(tmp_path / "directory")


def test_load_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo", 0o600)
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_secret_file(tmp_path / "fifo")


def test_load_refuses_oversized_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="larger than"):
        read_secret_file(plant(tmp_path / "big", b"0" * (64 * 1024 + 1)))


@pytest.mark.parametrize(
    "content",
    [
        "",
        "\n",
        "11" * 32,
        "0x" + "11" * 31,
        "0x" + "11" * 33,
        "0x" + "11" * 32 + "\n\n",
        "0x" + "11" * 32 + "\n" + "0x" + "22" * 32,
        " 0x" + "11" * 32,
        "0x" + "1g" * 32,
        "0x" + "00" * 32,
        "0x" + f"{SECP256K1_N:064x}",
        "0X" + "11" * 32,
    ],
    ids=lambda content: repr(content)[:24],
)
def test_load_secp256k1_refuses_malformed(tmp_path: Path, content: str) -> None:
    path = plant(tmp_path / "key", content)
    with pytest.raises(KeyFileError) as raised:
        load_secp256k1_key(path)
    assert str(path) in str(raised.value)
    assert "1111111111" not in str(raised.value)  # no key material in messages


@pytest.mark.parametrize("content", ["0x" + "ab" * 32, "0x" + "AB" * 32 + "\r\n"])
def test_load_secp256k1_accepts_either_case_and_line_ending(tmp_path: Path, content: str) -> None:
    assert load_secp256k1_key(plant(tmp_path / "key", content)) == b"\xab" * 32


def _pem(key, encryption=None) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        encryption or serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n", id="garbage"),
        pytest.param(("0x" + "11" * 32).encode(), id="secp256k1-key-file"),
        pytest.param(_pem(ec.generate_private_key(ec.SECP256K1())), id="ec-key"),
        pytest.param(
            _pem(Ed25519PrivateKey.generate(), serialization.BestAvailableEncryption(b"pw")), id="encrypted"
        ),
    ],
)
def test_load_ed25519_refuses_malformed(tmp_path: Path, content: bytes) -> None:
    path = plant(tmp_path / "key.pem", content)
    with pytest.raises(KeyFileError) as raised:
        load_ed25519_key(path)
    assert str(path) in str(raised.value)
