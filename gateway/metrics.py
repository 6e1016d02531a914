"""Prometheus metrics: what the gateway counts, and the text `GET /metrics` answers.

Every worker process counts into prometheus_client's metrics below. `verdict serve` sets
PROMETHEUS_MULTIPROC_DIR (a fresh directory of its own unless the operator gave one) before
any worker starts, so each worker writes its samples to memory-mapped files there and a scrape,
whichever worker answers it, sums every worker's (prometheus_client's multiprocess mode). An
app built in a process without that variable (tests, an embedded app) answers from its own
registry. prometheus_client chooses between the two when it is first imported, so the variable
must be set before this module is imported, as `verdict serve` does.

What the database knows (log sizes, the age of the newest checkpoint, pending approvals and,
with a witness policy, how far the witnessed checkpoints lag) is read at scrape time (`read_database_gauges`), so it is the same whichever worker answers and
costs nothing between scrapes.

Labels are bounded: route templates, never raw paths; decisions, outcomes and the API's stable
error codes; witnesses by their name in the operator's witness policy. A tenant label appears only when the operator opts in
(VERDICT_METRICS_TENANT_LABELS=1), since tenants are unbounded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

__all__ = ["CONTENT_TYPE_LATEST", "DatabaseGauges", "read_database_gauges", "render"]

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Request latencies: 1 ms to 10 s (the propose path's p99 target is tens of milliseconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# In-process work (a policy's evaluation): 10 µs to 100 ms.
FAST_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

HTTP_REQUESTS = Counter(
    "verdict_http_requests", "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)  # fmt: skip
HTTP_DURATION = Histogram(
    "verdict_http_request_duration_seconds",
    "Time from a request's arrival to its last byte sent (the propose latency: the propose route's).",
    ["method", "route"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
DECISIONS = Counter("verdict_decisions", "Proposals decided and committed, by decision.", ["decision"])
TENANT_DECISIONS = Counter(
    "verdict_tenant_decisions", "As verdict_decisions_total, per tenant (VERDICT_METRICS_TENANT_LABELS=1).",
    ["tenant", "decision"],
)  # fmt: skip
POLICY_EVALUATION = Histogram(
    "verdict_policy_evaluation_seconds", "Time to evaluate a policy for one proposal.", buckets=FAST_BUCKETS
)
IDEMPOTENT_REPLAYS = Counter(
    "verdict_idempotent_replays", "Proposals answered from an earlier one with the same Idempotency-Key."
)
RATE_LIMITED = Counter("verdict_rate_limited_requests", "Requests refused with 429 rate_limited.")
PROBLEMS = Counter(
    "verdict_problems", "Error answers (problem+json), by status and stable code.", ["status", "code"]
)
CHAIN_BATCH_SIZE = Histogram(
    "verdict_chain_writer_batch_size", "Units (proposals, approvals, …) per chain-writer batch.",
    buckets=BATCH_BUCKETS,
)  # fmt: skip
CHAIN_COMMIT = Histogram(
    "verdict_chain_writer_commit_seconds",
    "Time to write and commit one chain-writer batch, by path (fast: one statement; locked).",
    ["path"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
AUDIT_ENTRIES = Counter("verdict_audit_entries_appended", "Audit entries committed to tenants' logs.")
APPROVALS = Counter(
    "verdict_approvals",
    "Approval answers accepted, by answer (approve, reject) and the action's status after it.",
    ["answer", "outcome"],
)
DATABASE_ERRORS = Counter(
    "verdict_database_errors", "Database or disk failures met (each answered 503), by code.", ["code"]
)
DATABASE_POOL = Gauge(
    "verdict_database_pool_connections",
    "PostgreSQL pool connections of all workers, by state (open, in_use, max).",
    ["state"], multiprocess_mode="livesum",
)  # fmt: skip
EXECUTIONS = Counter(
    "verdict_executions_finished", "Executions that reached an end state, by rail kind and status.",
    ["rail_kind", "status"],
)  # fmt: skip
WEBHOOK_DELIVERIES = Counter(
    "verdict_webhook_deliveries", "Webhook delivery attempts, by result (delivered, failed).", ["result"]
)

WITNESS_REQUESTS = Counter(
    "verdict_witness_requests",
    "Cosignature requests to the witness policy's witnesses, one per checkpoint asked (a 409 size"
    " correction's second POST included), by witness and outcome"
    " (ok, refused, unreachable, conflict, bad_cosignature).",
    ["witness", "outcome"],
)  # fmt: skip
WITNESS_DURATION = Histogram(
    "verdict_witness_request_duration_seconds",
    "Cosigning round trip to one witness, answered or not (the consistency proof, the POST and"
    " checking the cosignature), by witness.",
    ["witness"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
WITNESSED_CHECKPOINTS = Counter(
    "verdict_witnessed_checkpoints",
    "Witnessing rounds of a signed checkpoint, by result: published (the quorum cosigned it) or"
    " held (held back: the quorum was not met).",
    ["result"],
)  # fmt: skip
# A witness's failure codes (gateway.services.witnessing) as the outcome label.
WITNESS_OUTCOMES = {
    "witness_refused": "refused",
    "witness_unreachable": "unreachable",
    "witness_conflict": "conflict",
    "witness_ahead": "conflict",
    "witness_bad_cosignature": "bad_cosignature",
}


def count_witness_request(witness: str, code: str | None, seconds: float) -> None:
    """One cosigning attempt: `code` None when it cosigned, else its `WitnessFailed` code."""
    WITNESS_REQUESTS.labels(witness, "ok" if code is None else WITNESS_OUTCOMES.get(code, "refused")).inc()
    WITNESS_DURATION.labels(witness).observe(seconds)


def is_multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_ENV))


def forget_this_process() -> None:
    """At a worker's exit: its live gauges (pool connections) stop counting."""
    if is_multiprocess():
        multiprocess.mark_process_dead(os.getpid())


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpObserver:
    """The middleware's part: one counter and one histogram per request, their labelled
    children cached (a `labels()` lookup costs more than the increment)."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    def observe(self, method: str, route: str | None, status: int, seconds: float) -> None:
        route = route or "unmatched"  # an unknown path is the client's text: never a label
        if method not in HTTP_METHODS:  # nor an unknown method
            method = "other"
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = self._counters[(method, route, status)] = HTTP_REQUESTS.labels(
                method, route, str(status)
            )
        counter.inc()
        histogram = self._histograms.get((method, route))
        if histogram is None:
            histogram = self._histograms[(method, route)] = HTTP_DURATION.labels(method, route)
        histogram.observe(seconds)  # the propose latency too: route="/v1/agents/{agent_id}/propose"


_decisions = {name: DECISIONS.labels(name) for name in ("ALLOW", "ESCALATE", "DENY")}


def count_decision(tenant: str, decision: str, *, per_tenant: bool) -> None:
    counter = _decisions.get(decision)
    (counter or DECISIONS.labels(decision)).inc()
    if per_tenant:
        TENANT_DECISIONS.labels(tenant, decision).inc()


def count_problem(status: int, code: str) -> None:
    PROBLEMS.labels(str(status), code).inc()
    if code == "rate_limited":
        RATE_LIMITED.inc()


def sample_pool(pool: Any) -> None:
    """Set this worker's pool gauges from an asyncpg pool (None: no pool, SQLite)."""
    if pool is None:
        return
    size = pool.get_size()
    DATABASE_POOL.labels("open").set(size)
    DATABASE_POOL.labels("in_use").set(size - pool.get_idle_size())
    DATABASE_POOL.labels("max").set(pool.get_max_size())


@dataclass(slots=True)
class DatabaseGauges:
    """What the database says at scrape time; `up` False when it could not be read."""

    up: bool = True
    tenants: int = 0
    log_entries: dict[str, int] = field(default_factory=dict)  # tenant -> its log's size
    unintegrated: dict[str, int] = field(default_factory=dict)  # tenant -> entries past its checkpoint
    checkpoint_age: dict[str, float] = field(default_factory=dict)  # tenant -> seconds, when behind
    pending_approvals: dict[str, int] = field(default_factory=dict)
    witnessing: bool = False  # a witness policy is configured: the two below are read
    unwitnessed: dict[str, int] = field(
        default_factory=dict
    )  # tenant -> entries past its witnessed checkpoint
    witnessed_age: dict[str, float] = field(default_factory=dict)  # tenant -> seconds, when behind


_HEADS = (
    "SELECT h.tenant_id, h.size, COALESCE(t.size, 0) AS checkpointed,"
    " (SELECT c.created_at FROM audit_checkpoints c WHERE c.tenant_id = h.tenant_id"
    "  ORDER BY c.size DESC LIMIT 1) AS last_checkpoint"
    " FROM audit_heads h LEFT JOIN audit_tree_heads t ON t.tenant_id = h.tenant_id"
)
_PENDING = "SELECT tenant_id, COUNT(*) AS n FROM actions WHERE status = ? GROUP BY tenant_id"
# Per log: its size, the newest checkpoint published under the witness quorum, and (for a log with
# none yet) when its first checkpoint was signed. Index lookups on (tenant_id, size) only.
_WITNESSED = (
    "SELECT h.tenant_id, h.size,"
    " (SELECT w.size FROM audit_witnessed w WHERE w.tenant_id = h.tenant_id ORDER BY w.size DESC LIMIT 1) AS witnessed,"
    " (SELECT w.created_at FROM audit_witnessed w WHERE w.tenant_id = h.tenant_id"
    "  ORDER BY w.size DESC LIMIT 1) AS last_witnessed,"
    " (SELECT c.created_at FROM audit_checkpoints c WHERE c.tenant_id = h.tenant_id"
    "  ORDER BY c.size LIMIT 1) AS first_checkpoint"
    " FROM audit_heads h"
)


async def read_database_gauges(
    db: Any, pending_status: str, now: float, *, witnessing: bool = False
) -> DatabaseGauges:
    """Read the log heads, checkpoints and pending approvals (and, with `witnessing`, the
    witnessed checkpoints). Raises what the database raises (gateway.errors.Unavailable for an
    outage)."""
    from gateway.clock import parse_rfc3339

    gauges = DatabaseGauges(witnessing=witnessing)
    async with db.read() as conn:
        heads = await conn.fetch(_HEADS)
        pending = await conn.fetch(_PENDING, pending_status)
        witnessed = await conn.fetch(_WITNESSED) if witnessing else []
    gauges.tenants = len(heads)
    for row in heads:
        tenant, size, checkpointed = row["tenant_id"], int(row["size"]), int(row["checkpointed"])
        gauges.log_entries[tenant] = size
        gauges.unintegrated[tenant] = max(0, size - checkpointed)
        if size > checkpointed and row["last_checkpoint"] is not None:
            gauges.checkpoint_age[tenant] = max(0.0, now - parse_rfc3339(row["last_checkpoint"]).timestamp())
    gauges.pending_approvals = {row["tenant_id"]: int(row["n"]) for row in pending}
    for row in witnessed:
        tenant, behind = row["tenant_id"], int(row["size"]) - int(row["witnessed"] or 0)
        gauges.unwitnessed[tenant] = max(0, behind)
        since = row["last_witnessed"] or row["first_checkpoint"]  # none witnessed yet: waiting since
        if behind > 0 and since is not None:
            gauges.witnessed_age[tenant] = max(0.0, now - parse_rfc3339(since).timestamp())
    return gauges


class _DatabaseCollector:
    """The scrape-time gauges as metric families (summed unless per-tenant labels are on)."""

    def __init__(self, gauges: DatabaseGauges, per_tenant: bool) -> None:
        self.gauges, self.per_tenant = gauges, per_tenant

    def collect(self) -> Iterable[Metric]:
        g = self.gauges
        up = GaugeMetricFamily("verdict_database_up", "1 when this scrape could read the database.")
        up.add_metric([], 1 if g.up else 0)
        yield up
        if not g.up:
            return
        yield GaugeMetricFamily("verdict_tenants", "Tenants (each has one audit log).", value=g.tenants)
        yield self._family("verdict_audit_log_entries", "Entries in the audit logs.", g.log_entries, sum)
        yield self._family(
            "verdict_audit_unintegrated_entries",
            "Entries not yet covered by a signed checkpoint.", g.unintegrated, sum,
        )  # fmt: skip
        yield self._family(
            "verdict_audit_checkpoint_age_seconds",
            "Age of the newest checkpoint of a log with entries it does not cover (0: none behind).",
            g.checkpoint_age, lambda values: max(values, default=0.0),
        )  # fmt: skip
        yield self._family(
            "verdict_approvals_pending", "Escalated actions waiting for approvals.", g.pending_approvals, sum
        )
        if not g.witnessing:
            return
        yield self._family(
            "verdict_audit_unwitnessed_entries",
            "Entries not yet covered by a checkpoint published under the witness quorum.", g.unwitnessed, sum,
        )  # fmt: skip
        yield self._family(
            "verdict_audit_witnessed_checkpoint_age_seconds",
            "Age of the newest checkpoint published under the witness quorum (or, before any, of the first"
            " signed one) of a log with entries it does not cover (0: none behind).",
            g.witnessed_age, lambda values: max(values, default=0.0),
        )  # fmt: skip

    def _family(self, name: str, documentation: str, values: dict[str, Any], combine) -> Metric:
        if not self.per_tenant:
            return GaugeMetricFamily(name, documentation, value=combine(values.values()))
        family = GaugeMetricFamily(name, documentation, labels=["tenant"])
        for tenant in sorted(values):
            family.add_metric([tenant], values[tenant])
        return family


def render(gauges: DatabaseGauges, *, per_tenant: bool) -> bytes:
    """The exposition text: every worker's samples (or this process's) and the database's."""
    if is_multiprocess():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        counted = generate_latest(registry)
    else:
        counted = generate_latest(REGISTRY)
    extra = CollectorRegistry(auto_describe=False)
    extra.register(_DatabaseCollector(gauges, per_tenant))
    return counted + generate_latest(extra)
