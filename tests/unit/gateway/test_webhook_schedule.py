"""The retry schedule and the delivery settings read from the environment."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.events.schedule import DeliveryConfig


def test_the_spec_schedule_gives_up_after_about_a_day():
    config = replace(DeliveryConfig(), jitter=0.0)
    waits = [config.delay(n, None) for n in range(1, 8)]
    assert waits == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert 24 * 3600 < sum(waits) < 30 * 3600
    assert config.delay(8, None) is None  # the 8th failure disables


def test_jitter_stays_within_ten_percent():
    config = DeliveryConfig()
    waits = [config.delay(2, None) for _ in range(200)]
    assert all(270 <= w <= 330 for w in waits) and len(set(waits)) > 1


def test_retry_after_replaces_the_wait_up_to_a_limit():
    config = DeliveryConfig()
    assert config.delay(1, 120.0) == 120.0
    assert config.delay(1, 0.0) == 0.0
    assert config.delay(1, 10**9) == config.max_retry_after
    assert config.delay(8, 1.0) is None  # not past the last attempt


def test_settings_from_the_environment():
    config = DeliveryConfig.from_env(
        {
            "VERDICT_WEBHOOK_ALLOW_PRIVATE": "1",
            "VERDICT_WEBHOOK_TIMEOUT": "2",
            "VERDICT_WEBHOOK_RETRY_SCHEDULE": "0.5,1,2",
            "VERDICT_WEBHOOK_LEASE_SECONDS": "3",
            "VERDICT_WEBHOOK_DELIVERY": "0",
        }
    )
    assert (config.allow_private, config.timeout, config.schedule, config.lease_seconds, config.enabled) == (
        True, 2.0, (0.5, 1.0, 2.0), 3.0, False,
    )  # fmt: skip
    defaults = DeliveryConfig.from_env({})
    assert defaults.allow_private is False and defaults.timeout == 15 and defaults.lease_seconds == 60
    assert DeliveryConfig.from_env({"VERDICT_WEBHOOK_TIMEOUT": "90"}).lease_seconds == 95


@pytest.mark.parametrize(
    "env",
    [
        {"VERDICT_WEBHOOK_TIMEOUT": "10", "VERDICT_WEBHOOK_LEASE_SECONDS": "5"},
        {"VERDICT_WEBHOOK_RETRY_SCHEDULE": "1,-2"},
        {"VERDICT_WEBHOOK_RETRY_SCHEDULE": "soon"},
        {"VERDICT_WEBHOOK_ALLOW_PRIVATE": "maybe"},
    ],
)
def test_bad_settings_stop_the_start(env):
    with pytest.raises(ValueError):
        DeliveryConfig.from_env(env)
