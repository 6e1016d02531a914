"""The Litestar application: wiring of settings, keys, storage, ledger and services."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Request
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from gateway.auth import Authenticator, KeyUsage
from gateway.authz import authorize, bind_access
from gateway.bodies import check_request_body
from gateway.clock import hash_token, rfc3339, utc_now
from gateway.health import Health
from gateway.keyring import LOG, load_keyring, manifest_stamp
from gateway.ledger import Ledger
from gateway.problems import EXCEPTION_HANDLERS
from gateway.ratelimit import AddressLimiter
from gateway.routes import ROUTES
from gateway.services.actions import ActionService, purge_idempotency_keys
from gateway.services.approvals import ApprovalService
from gateway.services.audit import AuditService
from gateway.services.credentials import CredentialService
from gateway.services.lifecycle import run_expiry
from gateway.services.policies import PolicyService
from gateway.services.rate_limits import RateLimitService
from gateway.services.scopes import ScopeService
from gateway.services.tenants import TenantService
from gateway.settings import Settings
from gateway.slow_clients import BodyDeadline
from gateway.storage import Database, open_database
from gateway.storage.base import DatabaseCheck
from gateway.tracing import Tracing, configure_access_log

log = logging.getLogger("verdict")
ADMIN_KEY_ID = "key_admin"


async def install_admin_token(db: Database, token: str) -> None:
    """Record the bootstrap admin token's hash (the file in the data dir is the source of truth)."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO api_keys (id, tenant_id, role, agent_id, token_hash, created_at)"
            " VALUES (?, NULL, 'admin', NULL, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash",
            ADMIN_KEY_ID,
            hash_token(token),
            rfc3339(utc_now()),
        )


KEY_RELOAD_SECONDS = 1.0


async def watch_keys(state: State) -> None:
    """Pick up a key rotation (`verdict keys rotate`, which rewrites the manifest) without a
    restart: from the next proposal on, verdicts are signed with the new key; from the next
    checkpoint on, checkpoints with the new log key."""
    data_dir = state.settings.data_dir
    stamp = manifest_stamp(data_dir)
    while True:
        await asyncio.sleep(KEY_RELOAD_SECONDS)
        current = manifest_stamp(data_dir)
        if current == stamp:
            continue
        try:
            keyring = load_keyring(data_dir)
        except Exception:  # a half-done rotation or a bad file: keep the keys in use, say so
            log.exception("could not reload the signing keys; still using the previous ones")
            continue
        stamp = current
        state.keyring = keyring
        state.actions.signer = keyring.verdict_signer
        state.audit.set_log_key(keyring.log_key, keyring.retired_log_keys())
        log.warning(
            "signing keys reloaded: verdict signer %s, log key %s",
            keyring.verdict_signer.address,
            keyring.active(LOG).public,
        )


SAFE_RECURSION_LIMIT = 1000
PURGE_INTERVAL_SECONDS = 900.0


async def purge_periodically(db: Database, interval: float = PURGE_INTERVAL_SECONDS) -> None:
    """Delete expired idempotency records now and every `interval` seconds (best effort: a
    failed purge is logged and retried next time; expired records are ignored regardless)."""
    while True:
        try:
            await purge_idempotency_keys(db, utc_now())
        except Exception:
            log.warning("could not purge expired idempotency keys", exc_info=True)
        await asyncio.sleep(interval)


async def before_request(request: Request) -> None:
    """Before any handler: who is calling and may they (`gateway.authz`), then the body checks."""
    await authorize(request)
    await check_request_body(request)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    # Any earlier import of eth-account raised the limit to 100000 (see crypto/__init__.py);
    # request parsing must hit RecursionError long before the C stack overflows.
    if sys.getrecursionlimit() > SAFE_RECURSION_LIMIT:
        sys.setrecursionlimit(SAFE_RECURSION_LIMIT)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        keyring = load_keyring(settings.data_dir)
        db = open_database(settings.database_url, data_dir=settings.data_dir, schema=settings.database_schema)
        await db.open()
        ledger = Ledger(db)
        background: list[asyncio.Task[None]] = []
        usage = KeyUsage(db)
        try:
            await install_admin_token(db, keyring.admin_token)
            policies = PolicyService(db, ledger)
            state = app.state
            state.settings, state.keyring, state.db, state.ledger = settings, keyring, db, ledger
            state.health = Health()  # what /health reports; services add their checks
            state.health.add_check("database", DatabaseCheck(db))
            state.authenticator = authenticator = Authenticator(db, usage)
            state.tenants = TenantService(db, ledger)
            state.credentials = CredentialService(db, ledger, authenticator)
            state.policies = policies
            state.actions = ActionService(db, ledger, policies, keyring.verdict_signer)
            state.approvals = ApprovalService(db, ledger, policies, state.actions)
            state.scopes = ScopeService(db, ledger, state.actions.forget_config)
            state.audit = AuditService(db, keyring.log_key, settings.log_origin, keyring.retired_log_keys())
            background.append(asyncio.get_running_loop().create_task(watch_keys(state), name="keys"))
            state.rate_limits = RateLimitService(db, ledger)
            state.address_limiter = AddressLimiter(settings.public_rate_per_second, settings.public_burst)
            background.append(asyncio.get_running_loop().create_task(purge_periodically(db), name="purge"))
            background.append(asyncio.get_running_loop().create_task(run_expiry(db, ledger), name="expiry"))
            if settings.checkpoint_interval > 0:
                background.append(
                    asyncio.get_running_loop().create_task(
                        state.audit.run_checkpoints(settings.checkpoint_interval), name="checkpoints"
                    )
                )
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
            await usage.flush()
            await ledger.close()
            await db.close()

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
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="vk_…")
                }
            ),
        ),
    )
    bind_access(app)  # refuses to build an app with a route missing from the access table
    # Outermost layer, around Litestar's exception handling: every answer gets its request id.
    app.asgi_handler = Tracing(
        BodyDeadline(app.asgi_handler, settings.body_timeout), log_requests=settings.access_log
    )
    return app


def create_app_from_env() -> Litestar:
    """Factory for `verdict serve`'s worker processes (granian); the access log goes to stderr."""
    settings = Settings.from_env()
    configure_access_log(settings.access_log)
    return create_app(settings)
