"""The data directory's keys (manifest, rotation bookkeeping, keystore v3, refusals), the sealing
of keys under a key-encryption key, and the refusals of a key used outside its published window."""

from __future__ import annotations

import json
import os
import time

import pytest
from eth_account import Account

from crypto.errors import KeyFileError
from crypto.signing import recover_digest_signer
from gateway.keyring import (
    LOG,
    MANIFEST_FILE,
    VERDICT,
    KeyRecord,
    KeysUnavailable,
    Lease,
    PublishedSigner,
    activate,
    ensure_local_keys,
    format_time,
    load_private,
    local_records,
    new_key,
    read_manifest,
)
from gateway.sealing import KEK_ENV, SealError, kek_from_env, new_kek, seal, unseal


def test_first_start_creates_keys_and_a_manifest_of_public_data(tmp_path):
    data = tmp_path / "d"
    assert set(ensure_local_keys(data)) == {"verdict_key", "log_key"}
    manifest = json.loads((data / MANIFEST_FILE).read_text())
    assert [(k["kind"], k["not_after"]) for k in manifest["keys"]] == [(VERDICT, None), (LOG, None)]
    text = (data / MANIFEST_FILE).read_text()
    for name in ("verdict-signer.key", "log-signer.pem"):
        secret = (data / name).read_text().strip().splitlines()[-2 if name.endswith("pem") else 0]
        assert secret not in text
    assert ensure_local_keys(data) == []
    records = local_records(data, {})
    assert [len(load_private(data, r, {})) for r in records] == [32, 32]


def test_rotation_retires_the_old_key_and_keeps_it_in_the_manifest(tmp_path):
    data = tmp_path / "d"
    ensure_local_keys(data)
    record, _ = new_key(data, VERDICT)
    assert [r.public for r in read_manifest(data) if r.kind == VERDICT] != [record.public]  # not active yet
    active = activate(data, record)
    old, new = [r for r in read_manifest(data) if r.kind == VERDICT]
    assert new == active and old.not_after == new.not_before and new.not_after is None
    record, _ = new_key(data, LOG)
    activate(data, record)
    assert [r.not_after is None for r in read_manifest(data) if r.kind == LOG] == [False, True]
    assert oct((data / record.file).stat().st_mode & 0o777) == "0o600"


def test_a_manifest_that_does_not_match_the_key_files_is_refused(tmp_path):
    data = tmp_path / "d"
    ensure_local_keys(data)
    manifest = json.loads((data / MANIFEST_FILE).read_text())
    manifest["keys"][0]["public"] = "0x" + "11" * 20
    (data / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(KeyFileError, match="does not hold the key"):
        load_private(data, local_records(data, {})[0], {})
    manifest["keys"].append(dict(manifest["keys"][1]))  # two active log keys
    (data / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(KeyFileError, match="exactly one active log key"):
        read_manifest(data)


def test_a_key_file_others_can_read_is_refused(tmp_path):
    data = tmp_path / "d"
    ensure_local_keys(data)
    os.chmod(data / "log-signer.pem", 0o640)
    with pytest.raises(KeyFileError):
        load_private(data, local_records(data, {})[1], {})


def test_the_verdict_signer_can_come_from_a_keystore_v3_file(tmp_path):
    account = Account.create()
    keystore = tmp_path / "signer.json"
    keystore.write_text(json.dumps(Account.encrypt(account.key, "correct horse", iterations=2)))
    env = {"VERDICT_SIGNER_KEYSTORE": str(keystore), "VERDICT_SIGNER_PASSPHRASE": "correct horse"}
    records = local_records(tmp_path / "d", env)
    assert [(r.kind, r.public) for r in records] == [(VERDICT, account.address)]
    assert load_private(tmp_path / "d", records[0], env) == bytes(account.key)
    with pytest.raises(KeyFileError, match="passphrase"):
        local_records(tmp_path / "d", {**env, "VERDICT_SIGNER_PASSPHRASE": "wrong"})
    with pytest.raises(KeyFileError, match="VERDICT_SIGNER_PASSPHRASE"):
        local_records(tmp_path / "d", {"VERDICT_SIGNER_KEYSTORE": str(keystore)})


def test_a_sealed_key_opens_only_under_its_kek_and_its_own_row():
    kek = kek_from_env({KEK_ENV: new_kek()})
    private = os.urandom(32)
    sealed = seal(kek, VERDICT, "0xabc", private)
    assert unseal(kek, VERDICT, "0xabc", sealed) == private
    with pytest.raises(SealError, match="does not open"):
        unseal(kek_from_env({KEK_ENV: new_kek()}), VERDICT, "0xabc", sealed)
    with pytest.raises(SealError, match="does not open"):
        unseal(kek, VERDICT, "0xdef", sealed)  # moved to another row
    with pytest.raises(SealError, match="does not open"):
        unseal(kek, VERDICT, "0xabc", sealed[:-1] + bytes([sealed[-1] ^ 1]))


@pytest.mark.parametrize(
    "value",
    ["", "short", "!" * 43, new_kek() + "AAAA"],
    # fixed ids: a random key in a test's name differs between pytest-xdist's workers
    ids=["empty", "short", "not-base64url", "36-bytes"],
)
def test_a_kek_that_is_not_32_bytes_of_base64url_is_refused(value):
    if value == "":
        assert kek_from_env({KEK_ENV: value}) is None
        return
    with pytest.raises(KeyFileError, match="32 random bytes"):
        kek_from_env({KEK_ENV: value})


def test_a_kek_can_come_from_a_file(tmp_path):
    (tmp_path / "kek").write_text(new_kek() + "\n")
    assert len(kek_from_env({"VERDICT_KEY_ENCRYPTION_KEY_FILE": str(tmp_path / "kek")})) == 32


def test_a_published_signer_refuses_past_its_window_and_with_a_stale_lease():
    account = Account.create()
    since = format_time_seconds(-60)
    lease = Lease(5.0)
    signer = PublishedSigner(bytes(account.key), KeyRecord(VERDICT, "", account.address, since), lease)
    assert recover_digest_signer(b"\x01" * 32, signer.sign_digest(b"\x01" * 32)) == account.address
    retired = KeyRecord(VERDICT, "", account.address, since, format_time_seconds(-1))
    with pytest.raises(KeysUnavailable, match="retired"):
        PublishedSigner(bytes(account.key), retired, lease).sign_digest(b"\x01" * 32)
    lease.confirmed -= 6
    with pytest.raises(KeysUnavailable, match="could not confirm"):
        signer.sign_digest(b"\x01" * 32)
    lease.confirm()
    signer.sign_digest(b"\x01" * 32)


def format_time_seconds(offset: float) -> str:
    from datetime import UTC, datetime

    return format_time(datetime.fromtimestamp(time.time() + offset, UTC))


def test_the_key_in_force_follows_the_published_windows():
    from gateway.services.published_keys import in_force

    now = time.time()
    old = KeyRecord(VERDICT, "", "0xold", format_time_seconds(-100), format_time_seconds(10))
    new = KeyRecord(VERDICT, "", "0xnew", format_time_seconds(10))
    pending = KeyRecord(VERDICT, "", "0xpending", "")
    records = [old, new, pending]
    assert in_force(records, VERDICT, now) == old
    assert in_force(records, VERDICT, now + 11) == new
    assert in_force(records, LOG, now) is None
    # a host whose clock is behind the publisher's: before the first window, the first key
    assert in_force(records, VERDICT, now - 200) == old
