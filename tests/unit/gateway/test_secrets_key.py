"""The deployment's secrets key without a KEK: one data-dir file, created once, owner-only and
checked; a data dir with a per-feature file from before keeps using it for that feature."""

from __future__ import annotations

import base64
import os

import pytest

from crypto.errors import KeyFileError
from crypto.keys import write_secret_file
from gateway.services.secrets_key import LEGACY_FILES, RAILS, SECRETS_KEY_FILE, WEBHOOKS, file_keys


def test_one_secrets_key_file_is_created_once_owner_only_for_both_features(tmp_path):
    keys = file_keys(tmp_path)
    path = tmp_path / SECRETS_KEY_FILE
    assert keys.created and len(keys.rails) == 32 and keys.rails == keys.webhooks
    assert sorted(p.name for p in tmp_path.iterdir()) == [SECRETS_KEY_FILE]
    assert path.stat().st_mode & 0o777 == 0o600
    again = file_keys(tmp_path)
    assert (again.rails, again.webhooks, again.created) == (keys.rails, keys.rails, False)


def test_a_secrets_key_file_others_can_read_or_of_the_wrong_size_is_refused(tmp_path):
    file_keys(tmp_path)
    path = tmp_path / SECRETS_KEY_FILE
    path.chmod(0o644)
    with pytest.raises(KeyFileError):
        file_keys(tmp_path)
    path.chmod(0o600)
    path.write_text(base64.b64encode(b"short").decode())
    with pytest.raises(KeyFileError):
        file_keys(tmp_path)


def test_a_feature_file_from_before_is_kept_for_its_feature(tmp_path):
    old = os.urandom(32)
    write_secret_file(tmp_path / LEGACY_FILES[WEBHOOKS], base64.b64encode(old).decode() + "\n")
    keys = file_keys(tmp_path)
    assert keys.webhooks == old and keys.rails != old  # rails had no file: the deployment's key
    assert (tmp_path / SECRETS_KEY_FILE).exists()
    write_secret_file(tmp_path / LEGACY_FILES[RAILS], base64.b64encode(os.urandom(32)).decode() + "\n")
    both = file_keys(tmp_path)
    assert both.webhooks == old and both.rails != keys.rails  # each feature its own file from before
