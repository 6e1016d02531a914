"""Settings, read from `VERDICT_*` environment variables (CLI flags override them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path


def _flag(value: str | None, default: bool) -> bool:
    """`1/true/yes/on` and `0/false/no/off` (any case); unset or empty: the default."""
    if not value:
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected 0 or 1, not {value!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path(".verdict")
    database_url: str | None = None  # None: SQLite file in data_dir
    database_schema: str | None = None  # PostgreSQL schema (tests use one per run)
    database_pool_size: int = 10  # PostgreSQL connections per worker process, at most
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    log_origin: str = "localhost/verdict"
    max_body_bytes: int = 65536
    checkpoint_interval: float = 2.0  # seconds between checkpoints while entries arrive; 0: only on request
    # per client address and process, on the public routes that are rate limited (gateway.authz)
    public_rate_per_second: float = 20.0
    public_burst: int = 100
    access_log: bool = True  # one JSON line per request on the `verdict.access` logger
    # seconds between reads of watched tenants' log sizes (events: a missed wake-up only delays)
    events_poll_interval: float = 1.0
    # Slow and idle clients (gateway.serving, gateway.slow_clients); seconds, 0: no limit.
    header_timeout: float = 10.0  # all of a request's headers, from when the connection is ready
    body_timeout: float = 30.0  # all of a request's body, from its headers
    keepalive_timeout: float = 5.0  # an idle connection between requests; 0: no keep-alive
    max_connections: int = 512  # open client connections per worker; more wait in the backlog
    reuse_port: bool = False  # share the port with processes already listening on it (SO_REUSEPORT)
    # `GET /metrics` (gateway.metrics): a file holding a token that may read it besides the admin's,
    # and whether metrics carry a tenant label (tenants are unbounded: off unless asked)
    metrics_token_file: Path | None = None
    metrics_tenant_labels: bool = False
    # c2sp.org/tlog-policy file naming the witnesses (with URLs) and the quorum that must cosign a
    # checkpoint before it is published (gateway.services.witnessing); None: no witnesses
    witness_policy: Path | None = None
    # Load shedding per worker (gateway.admission): requests in progress, requests waiting for one
    # of those slots, and how long they may wait (seconds) before 503 `overloaded`. 0 in-flight: off.
    max_in_flight: int = 128
    max_queued: int = 256
    queue_wait: float = 0.5
    max_batches_in_flight: int = 4  # batch proposals (up to 100 actions each) in progress per worker

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        base = cls()
        return replace(
            base,
            data_dir=Path(env.get("VERDICT_DATA_DIR", str(base.data_dir))),
            database_url=env.get("VERDICT_DATABASE_URL") or None,
            database_schema=env.get("VERDICT_DATABASE_SCHEMA") or None,
            database_pool_size=int(env.get("VERDICT_DATABASE_POOL_SIZE", base.database_pool_size)),
            host=env.get("VERDICT_HOST", base.host),
            port=int(env.get("VERDICT_PORT", base.port)),
            workers=int(env.get("VERDICT_WORKERS", base.workers)),
            log_origin=env.get("VERDICT_LOG_ORIGIN", base.log_origin),
            max_body_bytes=int(env.get("VERDICT_MAX_BODY_BYTES", base.max_body_bytes)),
            checkpoint_interval=float(env.get("VERDICT_CHECKPOINT_INTERVAL", base.checkpoint_interval)),
            public_rate_per_second=float(
                env.get("VERDICT_PUBLIC_RATE_PER_SECOND", base.public_rate_per_second)
            ),
            public_burst=int(env.get("VERDICT_PUBLIC_BURST", base.public_burst)),
            access_log=_flag(env.get("VERDICT_ACCESS_LOG"), base.access_log),
            events_poll_interval=float(env.get("VERDICT_EVENTS_POLL_SECONDS", base.events_poll_interval)),
            header_timeout=float(env.get("VERDICT_HEADER_TIMEOUT", base.header_timeout)),
            body_timeout=float(env.get("VERDICT_BODY_TIMEOUT", base.body_timeout)),
            keepalive_timeout=float(env.get("VERDICT_KEEPALIVE_TIMEOUT", base.keepalive_timeout)),
            max_connections=int(env.get("VERDICT_MAX_CONNECTIONS", base.max_connections)),
            reuse_port=_flag(env.get("VERDICT_REUSE_PORT"), base.reuse_port),
            metrics_token_file=Path(env["VERDICT_METRICS_TOKEN_FILE"])
            if env.get("VERDICT_METRICS_TOKEN_FILE")
            else None,
            metrics_tenant_labels=_flag(env.get("VERDICT_METRICS_TENANT_LABELS"), base.metrics_tenant_labels),
            witness_policy=Path(env["VERDICT_WITNESS_POLICY"]) if env.get("VERDICT_WITNESS_POLICY") else None,
            max_in_flight=int(env.get("VERDICT_MAX_IN_FLIGHT", base.max_in_flight)),
            max_queued=int(env.get("VERDICT_MAX_QUEUED", base.max_queued)),
            queue_wait=float(env.get("VERDICT_QUEUE_WAIT", base.queue_wait)),
            max_batches_in_flight=int(env.get("VERDICT_MAX_BATCHES_IN_FLIGHT", base.max_batches_in_flight)),
        )

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings (for worker processes)."""
        env = {
            "VERDICT_DATA_DIR": str(self.data_dir),
            "VERDICT_HOST": self.host,
            "VERDICT_PORT": str(self.port),
            "VERDICT_WORKERS": str(self.workers),
            "VERDICT_LOG_ORIGIN": self.log_origin,
            "VERDICT_MAX_BODY_BYTES": str(self.max_body_bytes),
            "VERDICT_CHECKPOINT_INTERVAL": str(self.checkpoint_interval),
            "VERDICT_PUBLIC_RATE_PER_SECOND": str(self.public_rate_per_second),
            "VERDICT_PUBLIC_BURST": str(self.public_burst),
            "VERDICT_ACCESS_LOG": "1" if self.access_log else "0",
            "VERDICT_EVENTS_POLL_SECONDS": str(self.events_poll_interval),
            "VERDICT_HEADER_TIMEOUT": str(self.header_timeout),
            "VERDICT_BODY_TIMEOUT": str(self.body_timeout),
            "VERDICT_KEEPALIVE_TIMEOUT": str(self.keepalive_timeout),
            "VERDICT_MAX_CONNECTIONS": str(self.max_connections),
            "VERDICT_REUSE_PORT": "1" if self.reuse_port else "0",
            "VERDICT_METRICS_TENANT_LABELS": "1" if self.metrics_tenant_labels else "0",
            "VERDICT_MAX_IN_FLIGHT": str(self.max_in_flight),
            "VERDICT_MAX_QUEUED": str(self.max_queued),
            "VERDICT_QUEUE_WAIT": str(self.queue_wait),
            "VERDICT_MAX_BATCHES_IN_FLIGHT": str(self.max_batches_in_flight),
            "VERDICT_DATABASE_POOL_SIZE": str(self.database_pool_size),
        }
        if self.metrics_token_file is not None:
            env["VERDICT_METRICS_TOKEN_FILE"] = str(self.metrics_token_file)
        if self.database_url:
            env["VERDICT_DATABASE_URL"] = self.database_url
        if self.database_schema:
            env["VERDICT_DATABASE_SCHEMA"] = self.database_schema
        if self.witness_policy:
            env["VERDICT_WITNESS_POLICY"] = str(self.witness_policy)
        return env
