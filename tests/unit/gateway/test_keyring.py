"""The data directory's keys: the manifest, rotation bookkeeping, keystore v3, refusals."""

from __future__ import annotations

import json
import os

import pytest
from eth_account import Account

from crypto.errors import KeyFileError
from gateway.keyring import LOG, MANIFEST_FILE, VERDICT, activate, load_keyring, new_key, read_manifest


def test_first_start_creates_keys_and_a_manifest_of_public_data(tmp_path):
    ring = load_keyring(tmp_path / "d")
    assert set(ring.created) == {"verdict_key", "log_key", "admin_token"}
    manifest = json.loads((tmp_path / "d" / MANIFEST_FILE).read_text())
    assert [(k["kind"], k["not_after"]) for k in manifest["keys"]] == [(VERDICT, None), (LOG, None)]
    assert manifest["keys"][0]["public"] == ring.verdict_signer.address
    text = (tmp_path / "d" / MANIFEST_FILE).read_text()
    for name in ("verdict-signer.key", "log-signer.pem"):
        secret = (tmp_path / "d" / name).read_text().strip().splitlines()[-2 if name.endswith("pem") else 0]
        assert secret not in text
    again = load_keyring(tmp_path / "d")
    assert again.created == () and again.verdict_signer.address == ring.verdict_signer.address


def test_rotation_retires_the_old_key_and_keeps_it_published(tmp_path):
    data = tmp_path / "d"
    first = load_keyring(data)
    record, signer = new_key(data, VERDICT)
    assert load_keyring(data).verdict_signer.address == first.verdict_signer.address  # not active yet
    active = activate(data, record)
    ring = load_keyring(data)
    assert ring.verdict_signer.address == signer.address == active.public
    old, new = ring.of_kind(VERDICT)
    assert old.status == "retired" and old.not_after == new.not_before and new.status == "active"
    assert ring.log_key.public_key() == first.log_key.public_key()  # the other kind is untouched
    record, _ = new_key(data, LOG)
    activate(data, record)
    assert [r.status for r in load_keyring(data).of_kind(LOG)] == ["retired", "active"]
    assert oct((data / record.file).stat().st_mode & 0o777) == "0o600"


def test_a_manifest_that_does_not_match_the_key_files_is_refused(tmp_path):
    data = tmp_path / "d"
    load_keyring(data)
    manifest = json.loads((data / MANIFEST_FILE).read_text())
    manifest["keys"][0]["public"] = "0x" + "11" * 20
    (data / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(KeyFileError, match="does not hold the key"):
        load_keyring(data)
    manifest["keys"].append(dict(manifest["keys"][1]))  # two active log keys
    (data / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(KeyFileError, match="exactly one active log key"):
        read_manifest(data)


def test_a_key_file_others_can_read_is_refused(tmp_path):
    data = tmp_path / "d"
    load_keyring(data)
    os.chmod(data / "log-signer.pem", 0o640)
    with pytest.raises(KeyFileError):
        load_keyring(data)


def test_the_verdict_signer_can_come_from_a_keystore_v3_file(tmp_path):
    account = Account.create()
    keystore = tmp_path / "signer.json"
    keystore.write_text(json.dumps(Account.encrypt(account.key, "correct horse", iterations=2)))
    env = {"VERDICT_SIGNER_KEYSTORE": str(keystore), "VERDICT_SIGNER_PASSPHRASE": "correct horse"}
    ring = load_keyring(tmp_path / "d", env)
    assert ring.verdict_signer.address == account.address
    assert [r.public for r in ring.of_kind(VERDICT)] == [account.address]
    with pytest.raises(KeyFileError, match="passphrase"):
        load_keyring(tmp_path / "d", {**env, "VERDICT_SIGNER_PASSPHRASE": "wrong"})
    with pytest.raises(KeyFileError, match="VERDICT_SIGNER_PASSPHRASE"):
        load_keyring(tmp_path / "d", {"VERDICT_SIGNER_KEYSTORE": str(keystore)})
