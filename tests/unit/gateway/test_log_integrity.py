"""The checks the integrator runs before it signs (`gateway.services.log_integrity`), on a real
log with real keys: the signed tree head and a sample of earlier entries. Each failure is recorded
once, names the entry, and only a key this process does not know is retried instead."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import hash_leaf, new_signer, parse_vkey, root_hash, sign_checkpoint, vkey
from audit.checkpoint import Checkpoint
from audit.tree import integrate
from gateway.services.log_integrity import (
    LogIntegrity,
    LogIntegrityError,
    LogKeyUnknown,
    pick_sample,
    sample_keys,
    verify_sample,
    verify_signed_head,
)
from tests.unit.audit.synthetic import ORIGIN, TENANT, demo_log

SIZE = 13


@pytest.fixture
def log():
    return demo_log(6)  # 13 entries


def stored_tree(entries: list[bytes]) -> dict[tuple[int, int], bytes]:
    return {(level, index): h for level, index, h in integrate(0, [], [hash_leaf(r) for r in entries]).hashes}


def check_sample(integrity, log, entries, stored, positions=range(SIZE)):
    root = root_hash([hash_leaf(raw) for raw in log.entries])
    assert set(stored) >= sample_keys(list(positions), SIZE)
    verify_sample(integrity, TENANT, SIZE, root, dict(enumerate(entries)), stored, list(positions))


def test_an_intact_log_passes_both_checks(log) -> None:
    integrity = LogIntegrity()
    root = root_hash([hash_leaf(raw) for raw in log.entries])
    verify_signed_head(integrity, TENANT, SIZE, root, log.checkpoint(), [parse_vkey(log.vkey)])
    check_sample(integrity, log, log.entries, stored_tree(log.entries))
    assert integrity.problems == {}


@pytest.mark.parametrize(
    ("tamper", "seq"),
    [
        (lambda e: e.__setitem__(7, e[7].replace(b'"time":"2', b'"time":"3', 1)), 7),
        (lambda e: e.__setitem__(5, e[5].replace(b'"seq":5,', b'"seq": 5,')), 5),
        (lambda e: e.__setitem__(3, e[4]), 3),
    ],
    ids=["edited", "non-canonical", "moved"],
)
def test_a_changed_entry_in_the_sample_is_named_and_recorded_once(log, tamper, seq, caplog) -> None:
    entries = list(log.entries)
    tamper(entries)
    integrity = LogIntegrity()
    caplog.set_level(logging.ERROR, logger="verdict.audit")
    for _ in range(3):
        with pytest.raises(LogIntegrityError) as caught:
            check_sample(integrity, log, entries, stored_tree(log.entries))
        assert caught.value.extra == {"seq": seq}
    assert integrity.problems[TENANT].seq == seq
    with pytest.raises(LogIntegrityError):
        integrity.require_intact(TENANT)
    integrity.require_intact("another-tenant")  # other tenants are not affected
    assert len(caplog.records) == 1 and f"at entry {seq}" in caplog.records[0].getMessage()


def test_an_edited_stored_entry_and_leaf_fail_the_inclusion_in_the_signed_root(log) -> None:
    entries = list(log.entries)
    entries[6] = entries[6].replace(b'"time":"2', b'"time":"3', 1)
    stored = stored_tree(log.entries)
    stored[(0, 6)] = hash_leaf(entries[6])  # the forger rewrote the leaf too, not the signed root
    with pytest.raises(LogIntegrityError, match="entry 6"):
        check_sample(LogIntegrity(), log, entries, stored)


def test_a_tree_head_that_is_not_the_signed_one_is_recorded(log) -> None:
    integrity = LogIntegrity()
    forged_root = b"\x05" * 32
    with pytest.raises(LogIntegrityError, match="not the tree the checkpoint"):
        verify_signed_head(integrity, TENANT, SIZE, forged_root, log.checkpoint(), [parse_vkey(log.vkey)])
    assert TENANT in integrity.problems
    # a signature line of the log's own key that does not verify is tampering too
    note = log.checkpoint()
    lines = note.split("\n")
    lines[-2] = lines[-2][:-4] + ("AAA=" if not lines[-2].endswith("AAA=") else "BBB=")
    with pytest.raises(LogIntegrityError, match="does not verify"):
        verify_signed_head(
            LogIntegrity(), TENANT, SIZE, root_hash([]), "\n".join(lines), [parse_vkey(log.vkey)]
        )


def test_a_checkpoint_by_a_key_not_known_here_is_retried_not_recorded(log) -> None:
    """Another process rotated the log key and signed with the new one before this one reloaded."""
    new_key = Ed25519PrivateKey.generate()
    root = root_hash([hash_leaf(raw) for raw in log.entries])
    note = sign_checkpoint(Checkpoint(ORIGIN, SIZE, root), new_signer(ORIGIN, new_key))
    integrity = LogIntegrity()
    with pytest.raises(LogKeyUnknown) as caught:
        verify_signed_head(integrity, TENANT, SIZE, root, note, [parse_vkey(log.vkey)])
    assert caught.value.status == 503 and caught.value.retry_after_seconds
    assert integrity.problems == {}
    verify_signed_head(integrity, TENANT, SIZE, root, note, [parse_vkey(vkey(ORIGIN, new_key.public_key()))])


def test_the_sample_is_distinct_positions_of_the_tree() -> None:
    import random

    rng = random.Random(3)
    assert pick_sample(0, rng, 16) == []
    assert pick_sample(5, rng, 16) == [0, 1, 2, 3, 4]
    picked = pick_sample(1000, rng, 16)
    assert len(set(picked)) == 16 and all(0 <= i < 1000 for i in picked) and picked == sorted(picked)
