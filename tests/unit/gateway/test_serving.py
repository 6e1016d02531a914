"""The listening limits `verdict serve` hands granian, and the settings they come from."""

from __future__ import annotations

from gateway.serving import granian_options, header_timeout_ms
from gateway.settings import Settings


def test_slow_client_settings_come_from_the_environment_and_go_back_to_it():
    env = {
        "VERDICT_HEADER_TIMEOUT": "7.5",
        "VERDICT_BODY_TIMEOUT": "20",
        "VERDICT_KEEPALIVE_TIMEOUT": "0",
        "VERDICT_MAX_CONNECTIONS": "100",
        "VERDICT_REUSE_PORT": "1",
        "VERDICT_DATABASE_POOL_SIZE": "24",
    }
    settings = Settings.from_env(env)
    assert settings.database_pool_size == 24 and Settings().database_pool_size == 10
    assert (settings.header_timeout, settings.body_timeout, settings.keepalive_timeout) == (7.5, 20.0, 0.0)
    assert settings.max_connections == 100 and settings.reuse_port
    assert Settings.from_env(settings.to_env()) == settings


def test_defaults_cut_slow_clients():
    settings = Settings()
    assert (settings.header_timeout, settings.body_timeout, settings.keepalive_timeout) == (10.0, 30.0, 5.0)
    assert not settings.reuse_port


def test_granian_times_headers_and_idle_connections_with_one_timer():
    # granian's header-read timer also runs while a kept-alive connection waits for its next
    # request, so it gets the smaller of the two
    assert header_timeout_ms(Settings(header_timeout=10, keepalive_timeout=5)) == 5000
    assert header_timeout_ms(Settings(header_timeout=3, keepalive_timeout=5)) == 3000
    assert header_timeout_ms(Settings(header_timeout=10, keepalive_timeout=0)) == 10000
    assert header_timeout_ms(Settings(header_timeout=600, keepalive_timeout=0)) == 60000  # granian's bound


def test_http1_only_with_a_connection_cap():
    options = granian_options(Settings(max_connections=77, keepalive_timeout=0))
    assert options["http"] == "1"  # "auto" never times out a connection that sends nothing
    assert options["backpressure"] == 77
    assert options["http1_settings"].keep_alive is False
