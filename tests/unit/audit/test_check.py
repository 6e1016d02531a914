"""Whole-log re-verification (`audit.check.LogChecker`): a sound log passes; every edit, insertion,
drop or forged checkpoint is caught."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import (
    ChainError,
    EntryFormatError,
    NoteError,
    hash_leaf,
    new_signer,
    parse_vkey,
    root_hash,
    sign_checkpoint,
)
from audit.check import LogChecker
from audit.checkpoint import Checkpoint
from audit.errors import LogCheckError
from audit.tree import integrate
from tests.unit.audit.synthetic import ORIGIN, TENANT, Log, demo_log


def run(entries, notes, verifier, batch: int = 3):
    checker = LogChecker(TENANT, notes, verifier)
    for at in range(0, len(entries), batch):
        checker.add(entries[at : at + batch])
    return checker.finish()


def test_a_sound_log_passes_with_every_checkpoint_compared() -> None:
    log = demo_log(6)  # 13 entries
    notes = [log.checkpoint(size) for size in (0, 1, 2, 5, 8, 13)]
    for batch in (1, 3, 4, 100):
        report = run(log.entries, notes, parse_vkey(log.vkey), batch)
        assert report.size == 13 and report.checkpoints == 6
        assert report.root == root_hash([hash_leaf(raw) for raw in log.entries])
        assert report.types == {"tenant.created": 1, "action.proposed": 6, "verdict.issued": 6}


def test_add_returns_the_subtree_hashes_a_store_should_hold() -> None:
    log = demo_log(6)
    checker = LogChecker(TENANT, [log.checkpoint(5)], parse_vkey(log.vkey))
    returned = checker.add(log.entries[:7]) + checker.add(log.entries[7:])
    assert returned == integrate(0, [], [hash_leaf(raw) for raw in log.entries]).hashes


def test_a_dropped_tail_is_caught_by_a_larger_checkpoint() -> None:
    log = demo_log(3)
    notes = [log.checkpoint()]
    with pytest.raises(LogCheckError, match="entries were dropped"):
        run(log.entries[:-1], notes, parse_vkey(log.vkey))


def test_an_entry_rewritten_after_a_checkpoint_is_caught() -> None:
    log = demo_log(3)
    notes = [log.checkpoint(3), log.checkpoint()]
    # the operator edits the second payment and rebuilds every link after it: the chain is sound,
    # the first checkpoint still matches, the second does not
    rewritten = Log(log_key=log.log_key)
    rewritten.append("tenant.created", {"id": TENANT})
    for n in (1, 99, 3):
        rewritten.propose(n)
    assert rewritten.entries[:3] == log.entries[:3] and rewritten.entries[3] != log.entries[3]
    with pytest.raises(LogCheckError, match="checkpoint of size 7 signs root"):
        run(rewritten.entries, notes, parse_vkey(log.vkey))


def test_a_non_canonical_or_relinked_entry_is_caught() -> None:
    log = demo_log(2)
    entries = list(log.entries)
    entries[2] = entries[2].replace(b'"v":1}', b'"v": 1}')
    with pytest.raises(EntryFormatError):
        run(entries, [], parse_vkey(log.vkey))
    entries = list(log.entries)
    del entries[2]
    with pytest.raises(ChainError, match="gap in seq"):
        run(entries, [], parse_vkey(log.vkey))


def test_forged_checkpoints_are_refused_before_any_entry_is_read() -> None:
    log = demo_log(2)
    forger = Ed25519PrivateKey.generate()
    root = root_hash([hash_leaf(raw) for raw in log.entries])
    forged = sign_checkpoint(Checkpoint(ORIGIN, len(log.entries), root), new_signer(ORIGIN, forger))
    with pytest.raises(NoteError):
        LogChecker(TENANT, [forged], parse_vkey(log.vkey))
    fork = sign_checkpoint(Checkpoint(ORIGIN, 3, b"\x05" * 32), new_signer(ORIGIN, log.log_key))
    with pytest.raises(LogCheckError, match="two checkpoints of size 3"):
        LogChecker(TENANT, [log.checkpoint(3), fork], parse_vkey(log.vkey))
    with pytest.raises(LogCheckError, match="signs root"):
        run(log.entries, [fork], parse_vkey(log.vkey))
    empty = sign_checkpoint(Checkpoint(ORIGIN, 0, b"\x05" * 32), new_signer(ORIGIN, log.log_key))
    with pytest.raises(LogCheckError, match="size 0"):
        LogChecker(TENANT, [empty], parse_vkey(log.vkey))
