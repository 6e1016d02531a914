"""A tail of the events hub (pure): entries this process committed past a gap are held, the read
fills only the gap, and the tail then takes them in order."""

from __future__ import annotations

from audit.entry import GENESIS_PREV, encode_entry
from gateway.events.hub import Tail
from gateway.events.view import decode_entry


def _entry(seq: int):
    raw = encode_entry(
        seq=seq, tenant="acme", type="test.note", time="2026-01-01T00:00:00.000000Z", action_id=None,
        actor="test", data={"n": seq}, prev=GENESIS_PREV,
    )  # fmt: skip
    return decode_entry(raw)


async def test_entries_held_past_a_gap_are_not_read_again_and_follow_the_gap() -> None:
    tail = Tail("acme")
    tail.start_at(11)  # entries 0-10 are the database's
    tail.known = 15
    tail.hold([_entry(13), _entry(14)])  # this process's; 11 and 12 are another's
    assert tail.read_bound() == 13  # the read stops where the held entries begin
    tail.extend([_entry(11), _entry(12)])
    assert [item.entry.seq for item in tail.entries] == [11, 12, 13, 14]
    assert tail.last == 14 and not tail.held and tail.read_bound() == 15


async def test_held_entries_the_read_already_covered_are_dropped() -> None:
    tail = Tail("acme")
    tail.start_at(11)
    tail.known = 14
    tail.hold([_entry(13)])
    tail.extend([_entry(11), _entry(12), _entry(13)])  # a read that went past them (after a reset)
    assert [item.entry.seq for item in tail.entries] == [11, 12, 13]
    assert not tail.held
