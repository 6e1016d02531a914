"""Who may call which route: the API's one table of access rules, and its enforcement.

`ACCESS` maps every route (method, OpenAPI path) to the roles that may call it and the scope
of its objects. `bind_access` attaches each rule to its handler when the app is built and
refuses to build an app with a route missing from the table (or a rule for no route), so a
new route cannot ship unguarded. `authorize` runs before every handler (a `before_request`
hook, cheaper than a Litestar guard, which copies its handler per call): it authenticates
the caller and applies the rule, and handlers read the result with `principal_of`.

Scopes:
- `public`: no credential needed. Those marked `per_address` are rate limited per client
  address, for the whole deployment (`gateway.services.address_limits`): anyone can call them,
  so nothing but the address tells callers apart. `/health` is not, because load balancers and
  orchestrators probe it often from one address.
- `global`: not about one tenant (only the admin creates tenants).
- `tenant`: about the tenant in the path. A credential of another tenant gets 404
  `tenant_not_found`, never 403, whatever its role: existence does not leak (DESIGN
  invariant 8). The admin belongs to no tenant and may act on every tenant where listed.
- `owner`: about an object named by the path or query (an action, an agent) that the
  service looks up; another tenant's object, or another agent's, answers 404 from there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from litestar import Litestar, Request, WebSocket
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute, WebSocketRoute

from gateway.auth import ADMIN, AGENT, AUDITOR, METRICS, TENANT_ADMIN, Principal
from gateway.errors import Forbidden, NotFound

PUBLIC, GLOBAL, TENANT, OWNER = "public", "global", "tenant", "owner"
_ACCESS_OPT = "verdict_access"


@dataclass(frozen=True, slots=True)
class Access:
    roles: frozenset[str]
    scope: str
    # The authentication may come from the 5 s cache (auth.AUTH_CACHE_SECONDS): only for routes
    # whose every write goes through the ledger with the caller's key, re-checked at commit.
    cached: bool = False
    # Public routes only: each client address may call them at most so often (429 `rate_limited`).
    per_address: bool = False


def _rule(scope: str, *roles: str, cached: bool = False, per_address: bool = False) -> Access:
    return Access(frozenset(roles), scope, cached, per_address)


OPEN = _rule(PUBLIC)
OPEN_PER_ADDRESS = _rule(PUBLIC, per_address=True)
READERS = (TENANT_ADMIN, AUDITOR)
CONSOLE_PAGES = (
    "",
    "/static/{name}",
    "/queue",
    "/actions/{action_id}",
    "/actions/{action_id}/audit",
    "/actions/{action_id}/proof",
    "/live",
)

ACCESS: dict[tuple[str, str], Access] = {
    ("GET", "/health"): OPEN,
    # the operator's scraper: the admin token, or the metrics token (auth.METRICS) read by nothing else
    ("GET", "/metrics"): _rule(GLOBAL, ADMIN, METRICS),
    ("GET", "/v1/keys"): OPEN_PER_ADDRESS,
    ("POST", "/v1/tenants"): _rule(GLOBAL, ADMIN),
    ("GET", "/v1/tenants/{tenant_id}"): _rule(TENANT, ADMIN, *READERS),
    ("POST", "/v1/tenants/{tenant_id}/api-keys"): _rule(TENANT, ADMIN, TENANT_ADMIN),
    ("GET", "/v1/tenants/{tenant_id}/api-keys"): _rule(TENANT, ADMIN, *READERS),
    ("DELETE", "/v1/tenants/{tenant_id}/api-keys/{key_id}"): _rule(TENANT, ADMIN, TENANT_ADMIN),
    ("POST", "/v1/tenants/{tenant_id}/agents"): _rule(TENANT, TENANT_ADMIN),
    ("GET", "/v1/tenants/{tenant_id}/agents"): _rule(TENANT, *READERS),
    ("POST", "/v1/tenants/{tenant_id}/agents/{agent_id}/token"): _rule(TENANT, TENANT_ADMIN),
    ("GET", "/v1/tenants/{tenant_id}/agents/{agent_id}/scope"): _rule(TENANT, *READERS),
    ("PUT", "/v1/tenants/{tenant_id}/agents/{agent_id}/scope"): _rule(TENANT, TENANT_ADMIN),
    ("POST", "/v1/tenants/{tenant_id}/approvers"): _rule(TENANT, TENANT_ADMIN),
    ("GET", "/v1/tenants/{tenant_id}/approvers"): _rule(TENANT, *READERS),
    ("POST", "/v1/tenants/{tenant_id}/policies"): _rule(TENANT, TENANT_ADMIN),
    ("GET", "/v1/tenants/{tenant_id}/policies"): _rule(TENANT, *READERS),
    ("POST", "/v1/tenants/{tenant_id}/policies/simulate"): _rule(TENANT, *READERS),
    ("GET", "/v1/tenants/{tenant_id}/policies/{version}"): _rule(TENANT, *READERS),
    ("POST", "/v1/tenants/{tenant_id}/policies/{version}/activate"): _rule(TENANT, TENANT_ADMIN),
    ("GET", "/v1/tenants/{tenant_id}/audit/entries"): _rule(TENANT, *READERS),
    ("GET", "/v1/tenants/{tenant_id}/keys"): _rule(TENANT, ADMIN, *READERS, AGENT),
    ("GET", "/v1/tenants/{tenant_id}/audit/checkpoint"): _rule(TENANT, *READERS, AGENT),
    ("POST", "/v1/tenants/{tenant_id}/audit/checkpoint"): _rule(TENANT, *READERS),
    ("GET", "/v1/tenants/{tenant_id}/audit/proof/inclusion"): _rule(TENANT, *READERS),
    ("GET", "/v1/tenants/{tenant_id}/audit/proof/consistency"): _rule(TENANT, *READERS),
    ("GET", "/v1/actions/{action_id}/proof"): _rule(OWNER, *READERS, AGENT),
    # the log as C2SP tlog-tiles (gateway/controllers/log.py): who reads checkpoints and proofs
    ("GET", "/v1/tenants/{tenant_id}/log/checkpoint"): _rule(TENANT, *READERS, AGENT),
    ("GET", "/v1/tenants/{tenant_id}/log/tile/{tile_path}"): _rule(TENANT, *READERS),
    ("POST", "/v1/agents/{agent_id}/propose"): _rule(OWNER, AGENT, cached=True),
    ("POST", "/v1/agents/{agent_id}/propose/batch"): _rule(OWNER, AGENT, cached=True),
    ("GET", "/v1/tenants/{tenant_id}/rate-limits"): _rule(TENANT, *READERS),
    ("PUT", "/v1/tenants/{tenant_id}/rate-limits"): _rule(TENANT, TENANT_ADMIN),
    ("PUT", "/v1/tenants/{tenant_id}/agents/{agent_id}/rate-limits"): _rule(TENANT, TENANT_ADMIN),
    ("GET", "/v1/actions/{action_id}"): _rule(OWNER, *READERS, AGENT),
    ("GET", "/v1/actions"): _rule(OWNER, *READERS, AGENT),
    ("PATCH", "/v1/tenants/{tenant_id}"): _rule(TENANT, ADMIN, TENANT_ADMIN),
    ("GET", "/v1/tenants/{tenant_id}/approvers/{address}"): _rule(TENANT, *READERS),
    ("PATCH", "/v1/tenants/{tenant_id}/approvers/{address}"): _rule(TENANT, TENANT_ADMIN),
    ("DELETE", "/v1/tenants/{tenant_id}/approvers/{address}"): _rule(TENANT, TENANT_ADMIN),
    # Wallet approvals: the EIP-712 signature is the credential (gateway.services.approvals), so
    # approvers need no token; the action id (80 random bits) must be known to ask.
    ("GET", "/v1/actions/{action_id}/approval-request"): OPEN_PER_ADDRESS,
    ("POST", "/v1/actions/{action_id}/approve"): OPEN_PER_ADDRESS,
    ("POST", "/v1/actions/{action_id}/reject"): OPEN_PER_ADDRESS,
    ("POST", "/v1/tenants/{tenant_id}/approvals/bulk"): OPEN_PER_ADDRESS,
    ("POST", "/v1/tenants/{tenant_id}/approvals/bulk-request"): OPEN_PER_ADDRESS,
    ("DELETE", "/v1/actions/{action_id}"): _rule(OWNER, AGENT, TENANT_ADMIN),
    # Events (gateway/controllers/events.py): an agent sees only its own actions' events
    # (gateway.events.view); the WebSocket's handshake is its GET.
    ("GET", "/v1/tenants/{tenant_id}/events"): _rule(TENANT, *READERS, AGENT),
    ("GET", "/v1/tenants/{tenant_id}/events/stream"): _rule(TENANT, *READERS, AGENT),
    ("GET", "/v1/tenants/{tenant_id}/events/ws"): _rule(TENANT, *READERS, AGENT),
    ("GET", "/v1/actions/{action_id}/verdict"): _rule(OWNER, *READERS, AGENT),
    # Executions and rails (gateway.services.executions, gateway.services.rails)
    # cached as propose is: the execution's unit re-checks the key at commit
    ("POST", "/v1/actions/{action_id}/execute"): _rule(OWNER, AGENT, TENANT_ADMIN, cached=True),
    ("GET", "/v1/executions/{execution_id}"): _rule(OWNER, *READERS, AGENT),
    ("GET", "/v1/executions/{execution_id}/result"): _rule(OWNER, *READERS, AGENT),
    ("POST", "/v1/executions/{execution_id}/rollback"): _rule(OWNER, TENANT_ADMIN),
    ("POST", "/v1/actions/{action_id}/rollback"): _rule(OWNER, TENANT_ADMIN),
    # What a caller may do with an action now (gateway.services.operations): the unauthenticated
    # answer, for a `signer` (approve/reject); authenticated callers read a record's `operations`.
    ("GET", "/v1/actions/{action_id}/operations"): OPEN_PER_ADDRESS,
    ("GET", "/v1/tenants/{tenant_id}/rails"): _rule(TENANT, *READERS),
    ("GET", "/v1/tenants/{tenant_id}/rails/{name}"): _rule(TENANT, *READERS),
    ("PUT", "/v1/tenants/{tenant_id}/rails/{name}"): _rule(TENANT, TENANT_ADMIN),
    ("DELETE", "/v1/tenants/{tenant_id}/rails/{name}"): _rule(TENANT, TENANT_ADMIN),
    # webhooks (gateway/controllers/webhooks.py): tenant admins manage them, readers look
    ("POST", "/v1/tenants/{tenant_id}/webhooks"): _rule(TENANT, TENANT_ADMIN),
    ("GET", "/v1/tenants/{tenant_id}/webhooks"): _rule(TENANT, *READERS),
    ("GET", "/v1/tenants/{tenant_id}/webhooks/{webhook_id}"): _rule(TENANT, *READERS),
    ("PATCH", "/v1/tenants/{tenant_id}/webhooks/{webhook_id}"): _rule(TENANT, TENANT_ADMIN),
    ("DELETE", "/v1/tenants/{tenant_id}/webhooks/{webhook_id}"): _rule(TENANT, TENANT_ADMIN),
    ("POST", "/v1/tenants/{tenant_id}/webhooks/{webhook_id}/rotate-secret"): _rule(TENANT, TENANT_ADMIN),
    ("POST", "/v1/tenants/{tenant_id}/webhooks/{webhook_id}/replay"): _rule(TENANT, TENANT_ADMIN),
    ("GET", "/v1/tenants/{tenant_id}/webhooks/{webhook_id}/deliveries"): _rule(TENANT, *READERS),
    ("POST", "/v1/tenants/{tenant_id}/webhook-secret"): _rule(TENANT, TENANT_ADMIN),
    ("POST", "/v1/tenants/{tenant_id}/webhook-secret/rotate"): _rule(TENANT, TENANT_ADMIN),
    # the API documentation (Litestar's OpenAPI controller, Swagger UI from gateway/api_docs.py)
    ("GET", "/schema"): OPEN_PER_ADDRESS,
    ("GET", "/schema/openapi.json"): OPEN_PER_ADDRESS,
    ("GET", "/schema/{path}"): OPEN_PER_ADDRESS,
    ("GET", "/schema/assets/{name}"): OPEN_PER_ADDRESS,  # the pinned Swagger UI (gateway/api_docs.py)
    ("GET", "/schema/swagger"): OPEN_PER_ADDRESS,
    ("GET", "/schema/oauth2-redirect.html"): OPEN_PER_ADDRESS,
    # The approver console (gateway/console/): its credential is the console session cookie,
    # checked there, with a CSRF token on every state change; signing in is per address.
    **{("GET", f"/console{path}"): OPEN for path in CONSOLE_PAGES},
    ("POST", "/console/sign-in/challenge"): OPEN_PER_ADDRESS,
    ("POST", "/console/sign-in/verify"): OPEN_PER_ADDRESS,
    ("POST", "/console/sign-in/token"): OPEN_PER_ADDRESS,
    ("POST", "/console/tenant"): OPEN,
    ("POST", "/console/sign-out"): OPEN,
    # Litestar answers OPTIONS on every path itself (the Allow header; no data)
    ("OPTIONS", "*"): OPEN,
}


class UnlistedRoute(RuntimeError):
    """The app serves a route that `ACCESS` does not list, or `ACCESS` lists a route it does not serve."""


def openapi_path(path: str) -> str:
    """`/v1/tenants/{tenant_id:str}` -> `/v1/tenants/{tenant_id}`, as the OpenAPI schema writes it."""
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


def access_for(method: str, path: str) -> Access | None:
    """The rule of a route given as in the OpenAPI schema; None when it is not listed."""
    return ACCESS.get((method, path)) or ACCESS.get((method, "*"))


def bind_access(app: Litestar) -> None:
    """Attach each route's rule to its handler. Raises UnlistedRoute, so that an app with a
    route missing from the table never starts."""
    unused = set(ACCESS) - {("OPTIONS", "*")}
    missing = []
    for route in app.routes:
        if isinstance(route, WebSocketRoute):  # checked by `authorize_websocket`, as a GET
            access = access_for("GET", openapi_path(route.path))
            if access is None:
                missing.append(("GET", openapi_path(route.path)))
            else:
                unused.discard(("GET", openapi_path(route.path)))
                route.route_handler.opt.setdefault(_ACCESS_OPT, {})["GET"] = access
            continue
        if not isinstance(route, HTTPRoute):
            missing.append(("?", route.path))
            continue
        path = openapi_path(route.path)
        for method, (handler, _) in route.route_handler_map.items():
            access = access_for(method, path)
            if access is None:
                missing.append((method, path))
                continue
            unused.discard((method, path))
            handler.opt.setdefault(_ACCESS_OPT, {})[method] = access
    if missing or unused:
        raise UnlistedRoute(
            f"routes without an access rule: {sorted(missing)}; rules without a route: {sorted(unused)}"
            " (see gateway/authz.py)"
        )


def is_public(handler: HTTPRouteHandler, prefix: str = "") -> bool:
    """Whether every method and path of a (not yet registered) handler is public (`prefix`: the
    path of the Controller it belongs to)."""
    return all(
        access_for(method, openapi_path((prefix.rstrip("/") + path).rstrip("/") or "/"))
        in (OPEN, OPEN_PER_ADDRESS)
        for path in handler.paths
        for method in handler.http_methods
    )


def check_access(principal: Principal, access: Access, tenant_id: str | None) -> None:
    """Apply a rule to an authenticated caller. Raises NotFound (`tenant_not_found`) for a
    credential of another tenant than the path's, Forbidden (`forbidden_role`) for a role the
    rule does not list."""
    other_tenant = access.scope == TENANT and principal.role != ADMIN and principal.tenant_id != tenant_id
    if other_tenant:
        raise NotFound(f"tenant {tenant_id!r} not found", code="tenant_not_found")
    if principal.role not in access.roles:
        raise Forbidden(f"role {principal.role!r} may not call this route", code="forbidden_role")


_PRINCIPAL = "principal"  # the key in the request's state (gateway.tracing logs it)


async def authorize(request: Request) -> None:
    """Authenticate the caller and apply the route's rule (a `before_request` hook).

    Raises Unauthenticated, Forbidden, NotFound, RateLimited (a public route's per-address
    limit); Forbidden (`route_not_listed`) for a route
    without a rule, which `bind_access` makes impossible (fail closed regardless)."""
    rules = request.route_handler.opt.get(_ACCESS_OPT)
    access = rules.get(request.method) if rules else None
    if access is None:
        raise Forbidden("this route has no access rule", code="route_not_listed")
    if access.scope == PUBLIC:
        if access.per_address:
            client = request.client
            request.app.state.address_limiter.check(client.host if client is not None else "unknown")
        return
    principal = await request.app.state.authenticator.authenticate(
        request.headers.get("authorization"), cached=access.cached
    )
    check_access(principal, access, request.path_params.get("tenant_id"))
    request.scope["state"][_PRINCIPAL] = principal  # (`request.state` builds a new State per read)


# Browsers cannot set headers on a WebSocket handshake: they may offer the token as the
# subprotocol `bearer.<token>` instead (the answer never echoes it).
BEARER_SUBPROTOCOL = "bearer."


def websocket_authorization(socket: WebSocket) -> str | None:
    """The handshake's `Authorization` header, else `Bearer <token>` from a `bearer.<token>`
    subprotocol."""
    header = socket.headers.get("authorization")
    if header:
        return header
    offered = socket.headers.get("sec-websocket-protocol") or ""
    for protocol in offered.split(","):
        protocol = protocol.strip()
        if protocol.startswith(BEARER_SUBPROTOCOL):
            return "Bearer " + protocol.removeprefix(BEARER_SUBPROTOCOL)
    return None


async def authorize_websocket(socket: WebSocket) -> Principal:
    """`authorize` for a WebSocket handshake (Litestar runs no `before_request` hook for
    them): the route's rule is its GET's. Raises as `authorize` does."""
    rules = socket.route_handler.opt.get(_ACCESS_OPT)
    access = rules.get("GET") if rules else None
    if access is None or access.scope == PUBLIC:
        raise Forbidden("this route has no access rule", code="route_not_listed")
    principal = await socket.app.state.authenticator.authenticate(websocket_authorization(socket))
    check_access(principal, access, socket.path_params.get("tenant_id"))
    return principal


def principal_of(request: Request) -> Principal:
    """The caller `authorize` admitted (only on routes that are not public)."""
    return request.scope["state"][_PRINCIPAL]
