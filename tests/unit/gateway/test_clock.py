from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from gateway.clock import hash_token, new_id, new_token, parse_rfc3339, rfc3339, rfc3339_seconds


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)))
def test_rfc3339_is_fixed_width_and_round_trips(moment):
    text = rfc3339(moment)
    assert len(text) == 27 and text.endswith("Z")
    assert text == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert parse_rfc3339(text) == moment


def test_rfc3339_converts_other_zones_to_utc():
    moment = datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(moment) == "2026-03-29T01:30:00.000000Z"
    assert rfc3339_seconds(1_700_000_000) == "2023-11-14T22:13:20Z"


def test_ids_sort_by_time_and_tokens_are_long_and_hashed():
    ids = [new_id("act") for _ in range(50)]
    assert all(len(i) == 30 for i in ids)
    token = new_token()
    assert token.startswith("vk_") and len(token) >= 43
    assert hash_token(token) != token and len(hash_token(token)) == 64


def _crockford_by_shifts(prefix: str, value: int) -> str:
    """The plain encoding: 26 digits of 5 bits, most significant first."""
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    return f"{prefix}_{''.join(alphabet[value >> shift & 31] for shift in range(125, -1, -5))}"


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_new_id_spells_time_and_random_bits_in_crockford_base32(value):
    from unittest import mock

    with (
        mock.patch("gateway.clock.time.time_ns", return_value=(value >> 80) * 1_000_000),
        mock.patch("gateway.clock.os.urandom", return_value=(value & (2**80 - 1)).to_bytes(10, "big")),
    ):
        assert new_id("act") == _crockford_by_shifts("act", value)
