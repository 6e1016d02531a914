from __future__ import annotations

import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import (
    GENESIS_PREV,
    ChainError,
    EntryFormatError,
    encode_entry,
    leaf_hash,
    parse_entry,
    verify_chain,
)
from audit.entry import unplaced_entry
from crypto.canonical import sha256
from crypto.errors import CanonicalizationError
from tests.unit.crypto.test_canonical import json_trees, keys, texts


def make_chain(n: int, tenant: str = "acme") -> list[bytes]:
    entries, prev = [], GENESIS_PREV
    for seq in range(n):
        raw = encode_entry(
            seq=seq,
            tenant=tenant,
            type="t",
            time="2026-01-01T00:00:00.000000Z",
            action_id=None if seq % 2 else f"act_{seq}",
            actor="x",
            data={"n": seq, "é": "ü"},
            prev=prev,
        )
        entries.append(raw)
        prev = leaf_hash(raw).hex()
    return entries


def test_entry_is_rfc8785_of_the_v1_fields():
    raw = make_chain(1)[0]
    obj = json.loads(raw)
    assert raw == rfc8785.dumps(obj)
    assert list(obj) == sorted(obj)
    assert set(obj) == {"v", "seq", "tenant", "type", "time", "action_id", "actor", "data", "prev"}


def test_leaf_hash_is_rfc6962():
    raw = b'{"x":1}'
    assert leaf_hash(raw) == sha256(b"\x00" + raw)


def test_verify_chain_accepts_a_good_chain():
    entries = verify_chain(make_chain(5), tenant="acme")
    assert [e.seq for e in entries] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("mutation", ["drop-middle", "swap", "edit-data", "other-tenant", "truncate-prev"])
def test_verify_chain_names_the_broken_link(mutation):
    chain = make_chain(5)
    if mutation == "drop-middle":
        del chain[2]
    elif mutation == "swap":
        chain[1], chain[2] = chain[2], chain[1]
    elif mutation == "edit-data":
        obj = json.loads(chain[1])
        obj["data"]["n"] = 99
        chain[1] = rfc8785.dumps(obj)  # still canonical, so only the link to entry 2 breaks
    elif mutation == "other-tenant":
        chain = make_chain(5, tenant="globex")
    elif mutation == "truncate-prev":
        obj = json.loads(chain[3])
        obj["prev"] = "0" * 64
        chain[3] = rfc8785.dumps(obj)
    with pytest.raises(ChainError) as err:
        verify_chain(chain, tenant="acme")
    assert err.value.expected != err.value.found


def test_parse_refuses_non_canonical_bytes():
    raw = make_chain(1)[0]
    with pytest.raises(EntryFormatError):
        parse_entry(json.dumps(json.loads(raw), indent=1).encode())
    with pytest.raises(EntryFormatError):
        parse_entry(b"\xff")
    with pytest.raises(EntryFormatError):
        parse_entry(b'{"v": 1}')


# ---- Property: the spliced encoding (`Unplaced.place`) is the RFC 8785 form of the whole entry


def _reference(fields: dict) -> bytes | None:
    try:
        return rfc8785.dumps(fields)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError, RecursionError):
        return None  # the reference refuses it: so must encode_entry


@settings(max_examples=500)
@given(
    data=st.dictionaries(keys, json_trees, max_size=6),
    strings=st.tuples(texts, texts, texts, texts),
    action_id=st.none() | texts,
    places=st.lists(st.tuples(st.integers(0, 2**53 - 1), texts), min_size=1, max_size=3),
)
def test_spliced_entry_is_the_canonical_form_of_the_whole(data, strings, action_id, places):
    tenant, type_, time, actor = strings
    fields = {
        "tenant": tenant,
        "type": type_,
        "time": time,
        "action_id": action_id,
        "actor": actor,
        "data": data,
    }
    try:
        unplaced = unplaced_entry(**fields)
    except CanonicalizationError:
        unplaced = None
    for seq, prev in places:  # one encoding placed again and again, as a retried batch is
        want = _reference({"v": 1, "seq": seq, "prev": prev, **fields})
        if want is None:
            with pytest.raises(CanonicalizationError):
                encode_entry(seq=seq, prev=prev, **fields)
            continue
        assert unplaced is not None
        assert unplaced.place(seq, prev) == want
        assert encode_entry(seq=seq, prev=prev, **fields) == want
