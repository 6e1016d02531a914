"""The per-address token bucket and the window arithmetic of gateway.ratelimit."""

from __future__ import annotations

import pytest

from gateway.errors import RateLimited
from gateway.ratelimit import AddressLimiter, seconds_until_next_window, window_of


def test_a_bucket_allows_its_burst_then_refills_at_its_rate():
    limiter = AddressLimiter(per_second=2, burst=3)
    for _ in range(3):
        limiter.check("10.0.0.1", now=100.0)
    with pytest.raises(RateLimited) as refused:
        limiter.check("10.0.0.1", now=100.0)
    assert refused.value.code == "rate_limited" and refused.value.retry_after_seconds == 1
    limiter.check("10.0.0.2", now=100.0)  # another address has its own bucket
    limiter.check("10.0.0.1", now=100.5)  # half a second: one request back
    with pytest.raises(RateLimited):
        limiter.check("10.0.0.1", now=100.5)
    for _ in range(3):  # a long pause refills to the burst, not beyond
        limiter.check("10.0.0.1", now=1000.0)
    with pytest.raises(RateLimited):
        limiter.check("10.0.0.1", now=1000.0)


def test_a_slow_refill_asks_to_wait_long_enough():
    limiter = AddressLimiter(per_second=0.1, burst=1)
    limiter.check("a", now=0.0)
    with pytest.raises(RateLimited) as refused:
        limiter.check("a", now=0.0)
    assert refused.value.retry_after_seconds == 10


def test_the_limiter_forgets_everyone_when_full():
    limiter = AddressLimiter(per_second=1, burst=1, max_addresses=2)
    limiter.check("a", now=0.0)
    limiter.check("b", now=0.0)
    limiter.check("c", now=0.0)  # full: the buckets start over
    limiter.check("a", now=0.0)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        AddressLimiter(per_second=0, burst=1)
    with pytest.raises(ValueError):
        AddressLimiter(per_second=1, burst=0)


def test_windows_are_fixed_minutes():
    assert window_of(0) == 0 and window_of(59.999) == 0 and window_of(60) == 1
    assert seconds_until_next_window(60.0) == 60
    assert seconds_until_next_window(119.2) == 1
    assert seconds_until_next_window(119.99) == 1
