"""The offline verifier's meaning checks of executions: an execution follows an ALLOW verdict of its
action with the same digest and action hash, is requested before the verdict expires, every later
step follows its request, and an action has at most one succeeded execution. Each mutation is a
real, re-signed log (tests/unit/audit/synthetic.py) that a forged or buggy gateway could produce."""

from __future__ import annotations

import json
from typing import Any

import pytest

from audit import encode_entry, hash_leaf
from audit.bundle import verify_bundle
from audit.entry import GENESIS_PREV
from audit.errors import BundleError
from crypto.eip712 import hash_verdict, parse_verdict_typed_data
from tests.unit.audit.synthetic import TENANT, Log

BEFORE_EXPIRY = "2025-11-30T12:00:30Z"  # the synthetic verdicts expire at 12:01:00Z (1_764_504_060)
AFTER_EXPIRY = "2025-11-30T12:01:00Z"


def append_at(log: Log, time: str, type: str, data: dict[str, Any], action_id: str) -> int:
    """Log.append with a chosen time."""
    prev = hash_leaf(log.entries[-1]).hex() if log.entries else GENESIS_PREV
    seq = len(log.entries)
    raw = encode_entry(seq=seq, tenant=TENANT, type=type, time=time, action_id=action_id, actor="gateway",
                       data=data, prev=prev)  # fmt: skip
    log.entries.append(raw)
    return seq


def verdict_facts(log: Log, verdict_index: int) -> tuple[str, str]:
    typed_data = json.loads(log.entries[verdict_index])["data"]["typed_data"]
    domain, message = parse_verdict_typed_data(typed_data)
    return "0x" + hash_verdict(domain, message).hex(), "0x" + message.action_hash.hex()


def executed(
    log: Log,
    *,
    n: int = 1,
    time: str = BEFORE_EXPIRY,
    digest: str | None = None,
    execution_id: str = "exe_1",
    steps: tuple[str, ...] = ("execution.submitted", "execution.succeeded"),
    with_verdict: bool = True,
) -> list[int]:
    """An allowed action, its verdict and one execution; returns every index."""
    proposed, verdict = log.propose(n)
    indexes = [proposed, verdict] if with_verdict else [proposed]
    action_id = f"act_{n:04d}"
    real_digest, action_hash = verdict_facts(log, verdict)
    request = {"execution_id": execution_id, "rail": "bank_api", "rail_kind": "bank_api",
               "action_hash": action_hash, "verdict_digest": digest or real_digest,
               "verdict_expires_at": "2025-11-30T12:01:00Z"}  # fmt: skip
    indexes.append(append_at(log, time, "execution.requested", request, action_id))
    for step in steps:
        indexes.append(
            append_at(log, time, step, {"execution_id": execution_id, "reference": "pay_1"}, action_id)
        )
    return indexes


def check(log: Log, indexes: list[int]):
    return verify_bundle(log.bundle(indexes), log.vkey)


def test_an_execution_after_its_verdict_verifies():
    log = Log()
    indexes = executed(log)
    verified = check(log, indexes)
    assert verified.meaning_checked["execution.requested"] == 1
    assert verified.meaning_checked["execution.succeeded"] == 1


def test_rollback_steps_verify():
    log = Log()
    steps = (
        "execution.submitted",
        "execution.succeeded",
        "execution.rollback_requested",
        "execution.rolled_back",
    )
    assert check(log, executed(log, steps=steps)).meaning_checked["execution.rolled_back"] == 1


def test_execution_without_a_verdict_is_caught():
    log = Log()
    indexes = executed(log, with_verdict=False)
    with pytest.raises(BundleError, match="without a verdict") as caught:
        check(log, indexes)
    assert caught.value.step == "meaning"


def test_execution_requested_after_the_verdict_expired_is_caught():
    log = Log()
    with pytest.raises(BundleError, match="after its verdict expired"):
        check(log, executed(log, time=AFTER_EXPIRY))


def test_execution_naming_another_verdict_is_caught():
    log = Log()
    with pytest.raises(BundleError, match="names verdict"):
        check(log, executed(log, digest="0x" + "ab" * 32))


def test_execution_of_another_action_with_this_verdict_is_caught():
    log = Log()
    first = executed(log, n=1)
    _, other_verdict = log.propose(2)
    # a request for action 2 that reuses action 1's verdict digest
    digest, action_hash = verdict_facts(log, first[1])
    request = {"execution_id": "exe_2", "rail": "bank_api", "rail_kind": "bank_api", "action_hash": action_hash,
               "verdict_digest": digest, "verdict_expires_at": "2025-11-30T12:01:00Z"}  # fmt: skip
    forged = append_at(log, BEFORE_EXPIRY, "execution.requested", request, "act_0002")
    with pytest.raises(BundleError, match="names verdict"):
        check(log, [*first, other_verdict - 1, other_verdict, forged])


def test_second_succeeded_execution_is_caught():
    log = Log()
    indexes = executed(log)
    digest, action_hash = verdict_facts(log, indexes[1])
    request = {"execution_id": "exe_2", "rail": "bank_api", "rail_kind": "bank_api", "action_hash": action_hash,
               "verdict_digest": digest, "verdict_expires_at": "2025-11-30T12:01:00Z"}  # fmt: skip
    indexes.append(append_at(log, BEFORE_EXPIRY, "execution.requested", request, "act_0001"))
    indexes.append(
        append_at(log, BEFORE_EXPIRY, "execution.succeeded", {"execution_id": "exe_2"}, "act_0001")
    )
    with pytest.raises(BundleError, match="second succeeded execution"):
        check(log, indexes)


def test_a_failed_execution_then_a_success_verifies():
    log = Log()
    indexes = executed(log, steps=("execution.failed",))
    digest, action_hash = verdict_facts(log, indexes[1])
    request = {"execution_id": "exe_2", "rail": "bank_api", "rail_kind": "bank_api", "action_hash": action_hash,
               "verdict_digest": digest, "verdict_expires_at": "2025-11-30T12:01:00Z"}  # fmt: skip
    indexes.append(append_at(log, BEFORE_EXPIRY, "execution.requested", request, "act_0001"))
    indexes.append(
        append_at(log, BEFORE_EXPIRY, "execution.succeeded", {"execution_id": "exe_2"}, "act_0001")
    )
    assert check(log, indexes).meaning_checked["execution.succeeded"] == 1


def test_a_step_without_its_request_is_caught():
    log = Log()
    indexes = executed(log)
    del indexes[2]  # leave out execution.requested
    with pytest.raises(BundleError, match="without its request"):
        check(log, indexes)
