"""Whole-log re-verification (`audit.check.LogChecker`): a sound log passes; every edit, insertion,
drop or forged checkpoint is caught."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import (
    AuditError,
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


def run(entries, notes, verifier, batch: int = 3, stored_leaves=None):
    checker = LogChecker(TENANT, notes, verifier)
    for at in range(0, len(entries), batch):
        stored = None if stored_leaves is None else stored_leaves[at : at + batch]
        checker.add(entries[at : at + batch], stored)
    return checker.finish()


def named(entries, log: Log, *, stored: bool, sizes=(), batch: int = 4) -> tuple[type, int | None, str]:
    """Check a tampered copy of `log` and return (error type, the seq it names, message). With
    `stored`, the checker gets the leaf hashes of the untampered log, as the gateway stored them."""
    leaves = [hash_leaf(raw) for raw in log.entries] if stored else None
    if leaves is not None and len(entries) > len(leaves):
        leaves += [None] * (len(entries) - len(leaves))
    notes = [log.checkpoint(size) for size in sizes]
    with pytest.raises(AuditError) as caught:
        run(entries, notes, parse_vkey(log.vkey), batch, leaves)
    return type(caught.value), caught.value.seq, str(caught.value)


def edit_one_digit(raw: bytes) -> bytes:
    edited = raw.replace(b'"time":"2026-', b'"time":"2027-', 1)
    assert edited != raw
    return edited


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
    with pytest.raises(ChainError, match="out of place"):
        run(entries, [], parse_vkey(log.vkey))


# Each tampering names the first entry whose bytes no longer match, with the tree's stored leaf
# hashes (as the gateway and `verdict audit check` have them) and without (a bare log and its
# checkpoints), whatever the batch boundaries and checkpoint sizes.


@pytest.mark.parametrize("stored", [True, False])
@pytest.mark.parametrize("batch", [1, 4, 20, 21, 100])
def test_an_edited_digit_names_the_edited_entry_not_its_successor(stored, batch) -> None:
    log = demo_log(14)  # 29 entries
    entries = list(log.entries)
    entries[20] = edit_one_digit(entries[20])
    # a checkpoint of size 21 ends at the edited entry: its root is compared only after the link
    # to entry 21 named the entry
    kind, seq, message = named(entries, log, stored=stored, sizes=(3, 21, 29), batch=batch)
    assert seq == 20, message
    assert kind is (LogCheckError if stored else ChainError)
    assert "entry 20 was changed" in message


@pytest.mark.parametrize("stored", [True, False])
def test_a_non_canonical_entry_is_named(stored) -> None:
    log = demo_log(4)
    entries = list(log.entries)
    entries[5] = entries[5].replace(b'"seq":5,', b'"seq": 5,')
    kind, seq, message = named(entries, log, stored=stored, sizes=(9,))
    assert kind is EntryFormatError and seq == 5
    assert message.startswith("entry 5: entry bytes are not RFC 8785 canonical")
    assert "differ from their canonical form from byte" in message


@pytest.mark.parametrize("stored", [True, False])
def test_swapped_entries_name_the_first_of_the_two(stored) -> None:
    log = demo_log(8)
    entries = list(log.entries)
    entries[10], entries[11] = entries[11], entries[10]
    kind, seq, message = named(entries, log, stored=stored, sizes=(12, 17))
    assert kind is ChainError and seq == 10 and "out of place" in message


@pytest.mark.parametrize("stored", [True, False])
def test_an_entry_deleted_in_the_middle_is_named(stored) -> None:
    log = demo_log(8)
    entries = list(log.entries)
    del entries[10]
    kind, seq, message = named(entries, log, stored=stored, sizes=(17,))
    assert kind is ChainError and seq == 10 and "out of place" in message


@pytest.mark.parametrize("stored", [True, False])
def test_an_inserted_entry_is_named(stored) -> None:
    log = demo_log(8)
    forged = Log(log_key=log.log_key, entries=list(log.entries[:10]))
    forged.append("action.proposed", {"agent": "ap-bot", "note": "inserted"}, "act_9999")
    entries = forged.entries + log.entries[10:]  # a well-formed entry 10 linking to entry 9
    kind, seq, message = named(entries, log, stored=stored, sizes=(17,))
    assert seq == 10, message
    assert kind is (LogCheckError if stored else ChainError)


def test_an_edited_prev_names_its_own_entry_when_the_one_before_matched_its_stored_leaf() -> None:
    log = demo_log(4)
    entries = list(log.entries)
    at = entries[6].index(b'"prev":"') + len(b'"prev":"')
    flipped = b"1" if entries[6][at : at + 1] != b"1" else b"2"
    entries[6] = entries[6][:at] + flipped + entries[6][at + 1 :]  # still canonical, links nowhere
    kind, seq, message = named(entries, log, stored=True, sizes=(9,))
    assert seq == 6, message
    # without stored leaves, the entry before is the likelier one, and the message says both
    kind, seq, message = named(entries, log, stored=False, sizes=(9,))
    assert kind is ChainError and seq == 5 and "or entry 6's prev was changed" in message


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
