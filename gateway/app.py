"""The Litestar application: wiring of settings, keys, storage, ledger and services."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Request
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from audit.errors import AuditError
from audit.witness_policy import parse_policy
from gateway import metrics, telemetry
from gateway.admission import Admission, BatchGate
from gateway.api_docs import LocalSwaggerRenderPlugin
from gateway.auth import Authenticator, KeyUsage, metrics_token_hash
from gateway.authz import authorize, bind_access
from gateway.bodies import check_path_and_query, check_request_body
from gateway.clock import utc_now
from gateway.events.delivery import DeliveryWorker
from gateway.events.schedule import DeliveryConfig
from gateway.events.wakeups import open_events
from gateway.events.webhooks import WebhookService
from gateway.health import Health, HealthProblem, log_failure
from gateway.keyring import LOG, VERDICT
from gateway.ledger import Ledger
from gateway.problems import EXCEPTION_HANDLERS
from gateway.routes import ROUTES
from gateway.services.actions import ActionService, purge_idempotency_keys
from gateway.services.address_limits import SharedAddressLimiter
from gateway.services.approvals import ApprovalService
from gateway.services.audit import AuditService
from gateway.services.credentials import CredentialService
from gateway.services.executions import ExecutionService
from gateway.services.executor import Executor, ExecutorConfig
from gateway.services.lifecycle import run_expiry
from gateway.services.operations import OperationService
from gateway.services.policies import PolicyService
from gateway.services.published_keys import POLL_SECONDS, establish_keys, refresh_keys
from gateway.services.rails import RailService
from gateway.services.rate_limits import RateLimitService
from gateway.services.scopes import ScopeService
from gateway.services.tenants import TenantService
from gateway.services.tiles import TileService
from gateway.services.witnessing import WitnessingService
from gateway.settings import Settings
from gateway.slow_clients import BodyDeadline
from gateway.storage import Database, open_database
from gateway.storage.base import DatabaseCheck
from gateway.tracing import Tracing, configure_access_log

log = logging.getLogger("verdict")


async def watch_keys(state: State) -> None:
    """Follow the published keys (`gateway.services.published_keys`): a rotation made on any host,
    and the scheduled instant it takes effect at. Each successful look renews the signing lease;
    a host that cannot look for LEASE_SECONDS stops signing (503) until it can again."""
    failing = False
    while True:
        keyring = state.keyring
        delay = POLL_SECONDS
        if keyring.next_switch is not None:
            delay = min(delay, max(0.0, keyring.next_switch - time.time()))
        await asyncio.sleep(delay)
        try:
            fresh = await refresh_keys(state.db, keyring, state.settings.data_dir)
        except Exception as error:  # a database outage or a bad file: keep the keys in use, say so once
            if not failing:
                log.warning("cannot read the published signing keys: %s: %s", type(error).__name__, error)
            failing = True
            continue
        if failing:
            log.warning("the published signing keys are readable again")
            failing = False
        if fresh is keyring:
            continue
        state.keyring = fresh
        state.actions.signer = fresh.verdict_signer
        state.audit.set_log_key(fresh.log_key, fresh.retired_log_keys())
        switched = (fresh.verdict_signer, fresh.log_key) != (keyring.verdict_signer, keyring.log_key)
        for kind in (VERDICT, LOG):
            if fresh.active(kind).status == "retired":  # its successor is not a key this host holds
                log.error("this host does not hold the %s key in force: it signs nothing with it", kind)
        if switched:
            log.warning(
                "signing keys in force: verdict signer %s, log key %s",
                fresh.verdict_signer.address,
                fresh.active(LOG).public,
            )


SAFE_RECURSION_LIMIT = 1000
SHUTDOWN_STEP_SECONDS = 5.0
PURGE_INTERVAL_SECONDS = 900.0


async def purge_periodically(db: Database, interval: float = PURGE_INTERVAL_SECONDS) -> None:
    """Delete expired idempotency records now and every `interval` seconds (best effort: a
    failed purge is logged and retried next time; expired records are ignored regardless)."""
    while True:
        try:
            await purge_idempotency_keys(db, utc_now())
        except Exception:
            log_failure(log, "could not purge expired idempotency keys")
        await asyncio.sleep(interval)


async def before_request(request: Request) -> None:
    """Before any handler: path and query checks (they may reach the database), who is calling
    and may they (`gateway.authz`), then the body checks (`gateway.bodies`)."""
    check_path_and_query(request)
    with telemetry.span("authenticate"):
        await authorize(request)
    await check_request_body(request)


POOL_SAMPLE_SECONDS = 5.0


async def sample_pool_periodically(db: Database) -> None:
    """Keep this worker's pool gauges current between scrapes (gateway.metrics)."""
    pool = getattr(db, "pool", None)
    while pool is not None:
        metrics.sample_pool(pool)
        await asyncio.sleep(POOL_SAMPLE_SECONDS)


def start_witnessing(settings: Settings, state: State, background: list) -> WitnessingService | None:
    """The witness quorum of `settings.witness_policy`, its background rounds and health check;
    None without a policy. Raises ValueError for a policy file that is not a usable one."""
    if settings.witness_policy is None:
        return None
    try:
        policy = parse_policy(settings.witness_policy.read_text())
    except (OSError, AuditError) as error:
        raise ValueError(f"witness policy {settings.witness_policy}: {error}") from None
    witnessing = WitnessingService(state.audit, policy)
    state.audit.witnessing = witnessing
    state.health.add_check("witnesses", witnessing.health)
    interval = settings.checkpoint_interval or 2.0
    background.append(asyncio.get_running_loop().create_task(witnessing.run(interval), name="witnessing"))
    return witnessing


def audit_log_check(audit: AuditService):
    """`/health` check: a tenant's log that failed an integrity check makes the process unhealthy.
    Which tenants, and where, is in the gateway's log: `/health` is open to anyone."""

    async def check() -> HealthProblem | None:
        broken = len(audit.integrity_errors)
        if not broken:
            return None
        detail = f"the audit log of {broken} tenant(s) failed an integrity check; see the gateway's log"
        return HealthProblem("audit_log", "log_integrity_error", detail)

    return check


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    telemetry.configure_from_env()  # traces only when OTEL_* variables ask (gateway.telemetry)
    # Any earlier import of eth-account raised the limit to 100000 (see crypto/ethaccount.py);
    # request parsing must hit RecursionError long before the C stack overflows.
    if sys.getrecursionlimit() > SAFE_RECURSION_LIMIT:
        sys.setrecursionlimit(SAFE_RECURSION_LIMIT)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        token_hash = metrics_token_hash(settings.metrics_token_file)  # refuses before anything opens
        db = open_database(settings.database_url, data_dir=settings.data_dir, schema=settings.database_schema,
                           pool_size=settings.database_pool_size)  # fmt: skip
        await db.open()
        db = telemetry.traced_database(db)  # storage spans, when traces are on
        ledger = Ledger(db)
        background: list[asyncio.Task[None]] = []
        usage = KeyUsage(db)
        app.state.events = events = open_events(db, ledger, poll_interval=settings.events_poll_interval)
        deliveries: DeliveryWorker | None = None
        try:
            # the published keys, or a refusal to start (DESIGN invariant 12); the admin token once
            keyring = await establish_keys(db, settings.data_dir)
            policies = PolicyService(db, ledger)
            state = app.state
            state.settings, state.keyring, state.db, state.ledger = settings, keyring, db, ledger
            state.health = Health()  # what /health reports; services add their checks
            state.health.add_check("database", DatabaseCheck(db))
            state.authenticator = authenticator = Authenticator(db, usage, token_hash)
            state.tenants = TenantService(db, ledger)
            state.credentials = CredentialService(db, ledger, authenticator)
            state.policies = policies
            state.actions = ActionService(db, ledger, policies, keyring.verdict_signer)
            state.approvals = ApprovalService(db, ledger, policies, state.actions)
            state.scopes = ScopeService(db, ledger, state.actions.forget_config)
            state.audit = AuditService(db, keyring.log_key, settings.log_origin, keyring.retired_log_keys())
            state.health.add_check("audit_log", audit_log_check(state.audit))
            state.tiles = TileService(state.audit)
            state.witnessing = start_witnessing(settings, state, background)
            background.append(asyncio.get_running_loop().create_task(watch_keys(state), name="keys"))
            background.append(
                asyncio.get_running_loop().create_task(sample_pool_periodically(db), name="pool")
            )
            state.rate_limits = RateLimitService(db, ledger)
            state.address_limiter = SharedAddressLimiter(
                db, settings.public_rate_per_second, settings.public_burst
            )
            background.append(asyncio.get_running_loop().create_task(purge_periodically(db), name="purge"))
            background.append(asyncio.get_running_loop().create_task(run_expiry(db, ledger), name="expiry"))
            background.append(
                asyncio.get_running_loop().create_task(state.audit.verify_logs(), name="log-scan")
            )
            # Executions (issue 12): the rails, the request side, and this process's executor.
            state.rails = RailService(db, ledger, keyring.secrets.rails)
            state.executions = ExecutionService(db, ledger, policies, state.rails)
            state.operations = OperationService(db, state.actions, state.rails)
            state.executor = Executor(db, ledger, state.rails, ExecutorConfig.from_env())
            state.executions.executor = state.executor
            background.append(asyncio.get_running_loop().create_task(state.executor.run(), name="executor"))
            if settings.checkpoint_interval > 0:
                background.append(
                    asyncio.get_running_loop().create_task(
                        state.audit.run_checkpoints(settings.checkpoint_interval), name="checkpoints"
                    )
                )
            webhook_key, delivery = keyring.secrets.webhooks, DeliveryConfig.from_env()
            state.webhooks = WebhookService(db, ledger, webhook_key, allow_private=delivery.allow_private)
            state.deliveries = deliveries = DeliveryWorker(db, ledger, webhook_key, delivery)
            deliveries.follow(events.hub)  # woken by commits here and, on PostgreSQL, elsewhere
            if delivery.enabled:
                background.append(asyncio.get_running_loop().create_task(deliveries.run(), name="webhooks"))
            # Everything built so far lives as long as the process: move it out of the cyclic
            # collector's reach, so full collections walk only per-request garbage
            # (shorter pauses, which is what the p99 latency sees).
            gc.collect()
            gc.freeze()
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # Each step of the shutdown is bounded: a flush that cannot reach the database
            # (counts re-queued, sync retried) must not hold the process open.
            steps = [events.close(), usage.flush()]
            if deliveries is not None:
                steps.append(deliveries.close())
            if hasattr(app.state, "rails"):
                steps.append(app.state.rails.close())
            if getattr(app.state, "witnessing", None) is not None:
                steps.append(app.state.witnessing.close())
            if hasattr(app.state, "address_limiter"):
                steps.append(app.state.address_limiter.flush())
            for step in steps:
                try:
                    await asyncio.wait_for(step, SHUTDOWN_STEP_SECONDS)
                except TimeoutError:
                    log.warning("a shutdown step took over %s s; going on without it", SHUTDOWN_STEP_SECONDS)
            await ledger.close()
            await db.close()
            metrics.forget_this_process()
            telemetry.flush()

    app = Litestar(
        route_handlers=ROUTES,
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=before_request,
        state=State(),
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Verdict Gateway",
            version="1",
            description="Signed-verdict policy gateway for autonomous agents.",
            path="/schema",
            # Swagger UI from the gateway's own pinned copy (gateway/api_docs.py), not a CDN
            render_plugins=[LocalSwaggerRenderPlugin(path=["/", "/swagger"])],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="vk_…")
                }
            ),
        ),
    )
    bind_access(app)  # refuses to build an app with a route missing from the access table
    # Outermost layer, around Litestar's exception handling: every answer gets its request id.
    # Inside it, load shedding (gateway.admission) once the body is in, under its deadline.
    app.state.batch_gate = BatchGate(settings.max_batches_in_flight, settings.queue_wait)
    app.state.admission = admission = Admission(
        app.asgi_handler,
        max_in_flight=settings.max_in_flight,
        max_queued=settings.max_queued,
        queue_wait=settings.queue_wait,
        max_body_bytes=settings.max_body_bytes,
    )
    app.asgi_handler = Tracing(
        BodyDeadline(admission, settings.body_timeout), log_requests=settings.access_log
    )
    return app


def create_app_from_env() -> Litestar:
    """Factory for `verdict serve`'s worker processes (granian); the access log goes to stderr."""
    settings = Settings.from_env()
    configure_access_log(settings.access_log)
    return create_app(settings)
