"""The offline verifier's meaning checks of wallet approvals: each approval is the signature of its
typed data's digest, for its action, and a verdict of an escalated action needs approvals that
meet the decision's requirements. Built on a real synthetic log (tests/unit/audit/synthetic.py)."""

from __future__ import annotations

from typing import Any

import pytest

from audit.bundle import verify_bundle
from audit.errors import BundleError
from crypto.canonical import action_hash
from crypto.eip712 import (
    DECISION_ALLOW,
    ApprovalItem,
    ApprovalMessage,
    BulkApprovalMessage,
    Domain,
    VerdictMessage,
)
from crypto.signing import LocalSigner, sign_approval, sign_bulk_approval, sign_verdict
from tests.unit.audit.synthetic import TENANT, Log

DOMAIN = Domain(1, "0x" + "00" * 20)
CFO, CONTROLLER, CEO = (LocalSigner(bytes([n]) * 32) for n in (0x21, 0x22, 0x23))
TWO_OF_THREE = [{"rule": "execs", "threshold": 2, "roles": ["cfo", "controller", "ceo"]}]
ACTION = {"type": "pay_invoice", "amount": "60000.00", "vendor": "acme-supplies"}
ACTION_ID = "act_0100"
HASH = action_hash(ACTION)


def escalated(log: Log, requirements: list[dict[str, Any]] = TWO_OF_THREE) -> int:
    record = {
        "agent": "ap-bot",
        "action": ACTION,
        "action_hash": "0x" + HASH.hex(),
        "decision": "ESCALATE",
        "policy_version": 1,
        "approvals_required": requirements,
    }
    return log.append("action.proposed", record, ACTION_ID)


def answer(
    log: Log,
    signer: LocalSigner,
    role: str,
    approve: bool = True,
    *,
    action_hash: bytes = HASH,
    named: str | None = None,
    digest: str | None = None,
    kind: str = "eoa",
    entry_type: str | None = None,
) -> int:
    message = ApprovalMessage(ACTION_ID, action_hash, TENANT, role, approve, 1_764_600_000, "pay 60,000.00")
    signed = sign_approval(signer, DOMAIN, message)
    data = {
        "signer": named or signer.address,
        "kind": kind,
        "role": role,
        "approve": approve,
        "signature": signed.signature,
        "digest": digest or "0x" + signed.digest.hex(),
        "typed_data": signed.typed_data,
        "comment": None,
    }
    kind_of = entry_type or ("approval.granted" if approve else "approval.rejected")
    return log.append(kind_of, data, ACTION_ID)


def verdict(log: Log) -> int:
    message = VerdictMessage(
        ACTION_ID,
        HASH,
        TENANT,
        "ap-bot",
        "pay_invoice",
        DECISION_ALLOW,
        1,
        b"\x01" * 32,
        1_764_504_000,
        1_764_504_060,
    )
    signed = sign_verdict(log.verdict_signer, DOMAIN, message)
    return log.append(
        "verdict.issued",
        {"typed_data": signed.typed_data, "signature": signed.signature, "signer": signed.signer},
        ACTION_ID,
    )


def meaning_error(log: Log) -> str:
    with pytest.raises(BundleError) as caught:
        verify_bundle(log.bundle(list(range(len(log.entries)))), log.vkey)
    assert caught.value.step == "meaning", caught.value
    return str(caught.value)


def test_two_approvals_then_a_verdict_verify() -> None:
    log = Log()
    escalated(log)
    answer(log, CFO, "cfo")
    answer(log, CEO, "ceo")
    verdict(log)
    verified = verify_bundle(
        log.bundle(list(range(4))), log.vkey, verdict_signers=[log.verdict_signer.address]
    )
    assert verified.meaning_checked == {"action.proposed": 1, "approval.granted": 2, "verdict.issued": 1}


def test_a_verdict_without_enough_approvals_fails() -> None:
    log = Log()
    escalated(log)
    answer(log, CFO, "cfo")
    answer(log, CFO, "cfo")  # the same signer twice counts once
    verdict(log)
    assert "do not meet ['execs']" in meaning_error(log)


def test_a_verdict_before_its_approvals_fails() -> None:
    log = Log()
    escalated(log)
    verdict(log)
    answer(log, CFO, "cfo")
    answer(log, CEO, "ceo")
    assert "do not meet" in meaning_error(log)


def test_a_rejection_does_not_count_as_an_approval() -> None:
    log = Log()
    escalated(log)
    answer(log, CFO, "cfo")
    answer(log, CEO, "ceo", approve=False)
    verdict(log)
    assert "do not meet" in meaning_error(log)


def test_all_of_requirements_are_counted_per_role() -> None:
    log = Log()
    escalated(
        log, [{"rule": "dual", "all_of": [{"role": "cfo", "min": 1}, {"role": "controller", "min": 1}]}]
    )
    answer(log, CFO, "cfo")
    answer(log, CEO, "cfo")
    verdict(log)
    assert "do not meet ['dual']" in meaning_error(log)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ({"named": CEO.address}, "recovers to"),
        ({"digest": "0x" + "ab" * 32}, "digest is not the EIP-712 digest"),
        ({"action_hash": b"\x11" * 32}, "another action hash"),
        ({"entry_type": "approval.rejected"}, "approve=True"),
    ],
)
def test_a_tampered_approval_fails(tamper: dict[str, Any], message: str) -> None:
    log = Log()
    escalated(log)
    answer(log, CFO, "cfo", **tamper)
    assert message in meaning_error(log)


def test_an_approval_in_a_role_that_does_not_count_fails() -> None:
    log = Log()
    escalated(log, [{"rule": "cfo", "threshold": 1, "roles": ["cfo"]}])
    answer(log, CEO, "ceo")
    assert "does not count" in meaning_error(log)


def test_a_contract_wallet_approval_is_checked_up_to_its_digest() -> None:
    log = Log()
    escalated(log, [{"rule": "cfo", "threshold": 1, "roles": ["cfo"]}])
    # a contract wallet's signature needs its chain; the verifier checks the digest and the action
    answer(log, CFO, "cfo", named="0x" + "5a" * 20, kind="contract")
    verdict(log)
    assert verify_bundle(log.bundle([0, 1, 2]), log.vkey).meaning_checked["approval.granted"] == 1


def bulk(log: Log, items: list[tuple[str, bytes]]) -> int:
    message = BulkApprovalMessage(
        TENANT, "cfo", True, 1_764_600_000, tuple(ApprovalItem(i, h) for i, h in items)
    )
    signed = sign_bulk_approval(CFO, DOMAIN, message)
    data = {
        "signer": CFO.address, "kind": "eoa", "role": "cfo", "approve": True, "signature": signed.signature,
        "digest": "0x" + signed.digest.hex(), "typed_data": signed.typed_data, "comment": None,
    }  # fmt: skip
    return log.append("approval.granted", data, ACTION_ID)


def test_a_bulk_approval_counts_for_the_actions_it_lists() -> None:
    log = Log()
    escalated(log, [{"rule": "cfo", "threshold": 1, "roles": ["cfo"]}])
    bulk(log, [("act_0099", b"\x02" * 32), (ACTION_ID, HASH)])
    verdict(log)
    assert verify_bundle(log.bundle([0, 1, 2]), log.vkey).meaning_checked["approval.granted"] == 1


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([("act_0099", b"\x02" * 32)], "does not list this action"),
        ([(ACTION_ID, b"\x03" * 32)], "another action hash"),
    ],
)
def test_a_bulk_approval_that_does_not_list_the_action_fails(items, message: str) -> None:
    log = Log()
    escalated(log, [{"rule": "cfo", "threshold": 1, "roles": ["cfo"]}])
    bulk(log, items)
    assert message in meaning_error(log)
