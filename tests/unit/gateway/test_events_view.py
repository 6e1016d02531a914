"""The event view of audit entries: what each reader may see, and the filters (pure)."""

from __future__ import annotations

import pytest

from audit.entry import GENESIS_PREV, encode_entry
from gateway.errors import InvalidRequest
from gateway.events.view import Event, EventFilter, Reader, decode_entry, event_of, select


def _entry(seq: int, type_: str, action_id: str | None, data: dict, tenant: str = "acme"):
    raw = encode_entry(
        seq=seq, tenant=tenant, type=type_, time="2026-01-01T00:00:00.000000Z", action_id=action_id,
        actor="gateway", data=data, prev=GENESIS_PREV,
    )  # fmt: skip
    return decode_entry(raw)


APPROVAL = {
    "signer": "0xabc",
    "kind": "eoa",
    "role": "cfo",
    "approve": True,
    "signature": "0xsig",
    "digest": "0xdigest",
    "typed_data": {"domain": {}},
    "comment": "ok",
    "request": {"ip": "10.0.0.1"},
    "outcome": "allowed",
}


def test_event_carries_id_seq_and_whole_data_for_tenant_readers() -> None:
    entry = _entry(7, "approval.granted", "act_1", APPROVAL)
    event = event_of(entry, Reader("acme"))
    assert event == Event("acme:7", 7, "acme", "approval.granted", entry.time, "act_1", APPROVAL)


def test_agent_sees_an_approval_without_signature_typed_data_or_request_context() -> None:
    event = event_of(_entry(7, "approval.granted", "act_1", APPROVAL), Reader("acme", "bot"))
    assert event.data == {
        "signer": "0xabc", "kind": "eoa", "role": "cfo", "approve": True, "comment": "ok", "outcome": "allowed"
    }  # fmt: skip


def test_agent_sees_empty_data_of_an_entry_type_nobody_classified() -> None:
    event = event_of(_entry(3, "something.new", "act_1", {"secret": 1}), Reader("acme", "bot"))
    assert event.data == {}


def test_agent_sees_only_its_own_actions_and_no_tenant_entries() -> None:
    entries = [
        _entry(0, "tenant.created", None, {"id": "acme"}),
        _entry(1, "action.proposed", "act_mine", {"agent": "bot"}),
        _entry(2, "action.proposed", "act_other", {"agent": "other"}),
        _entry(3, "verdict.issued", "act_mine", {"signature": "0x"}),
    ]
    owners = {"act_mine": "bot", "act_other": "other"}
    seen = select(entries, Reader("acme", "bot"), EventFilter(), owners)
    assert [e.seq for e in seen] == [1, 3]
    assert [e.seq for e in select(entries, Reader("acme"), EventFilter(), owners)] == [0, 1, 2, 3]


def test_another_tenants_entry_is_never_selected() -> None:
    entries = [_entry(0, "tenant.created", None, {}, tenant="globex")]
    assert select(entries, Reader("acme"), EventFilter(), {}) == []


def test_filters_by_type_prefix_action_and_agent() -> None:
    entries = [
        _entry(1, "action.proposed", "a1", {"agent": "bot"}),
        _entry(2, "action.proposed", "a2", {"agent": "other"}),
        _entry(3, "verdict.issued", "a1", {}),
        _entry(4, "policy.published", None, {}),
    ]
    owners = {"a1": "bot", "a2": "other"}
    reader = Reader("acme")

    def seqs(wanted: EventFilter) -> list[int]:
        return [e.seq for e in select(entries, reader, wanted, owners)]

    assert seqs(EventFilter.parse("action.*")) == [1, 2]
    assert seqs(EventFilter.parse("verdict.issued,policy.published")) == [3, 4]
    assert seqs(EventFilter.parse(None, action_id="a1")) == [1, 3]
    assert seqs(EventFilter.parse(None, agent_id="other")) == [2]


@pytest.mark.parametrize("types", ["Action.Proposed", "action..x", "*", "a" * 65, ",".join(["a"] * 33)])
def test_bad_type_filters_are_refused(types: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        EventFilter.parse(types)
    assert caught.value.code == "invalid_filter"
