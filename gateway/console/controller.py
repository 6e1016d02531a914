"""The approver console's routes, under `/console` (registered in gateway/routes.py's ROUTES).

Pages are rendered on the server (Jinja2, autoescaped: every value is text, never markup) and
carry one ES module (`static/console.js`) for the wallet. Everything is served from here: no
third-party host, no build step. Every answer carries a strict Content-Security-Policy (no
inline script, `frame-ancestors 'none'`). These routes are public in `gateway/authz.py`'s table
because their credential is the console session cookie, checked here (`gateway.console.sessions`);
every state change also needs the session's CSRF token in `X-CSRF-Token` and a same-origin
`Origin`. Approving and rejecting go to the API's own routes with the wallet's signature, so
nothing the API would refuse can be done here.
"""

from __future__ import annotations

import base64
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie, State
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Redirect, Stream

from gateway import schemas
from gateway.clock import utc_now
from gateway.console import views
from gateway.console.live import changes as live_changes
from gateway.console.live import page_filter
from gateway.console.sessions import SESSION_TTL, ConsoleSession, ConsoleSessions
from gateway.errors import AppError, Forbidden, NotFound, Unauthenticated

COOKIE = "verdict_console"
HERE = Path(__file__).parent
STATIC = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
    " form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
DECIDED_STATUSES = ("allowed", "denied", "rejected", "expired", "cancelled")
HEADINGS = {"awaiting": "Awaiting me", "pending": "All pending", "decided": "Decided"}
_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True), auto_reload=False
)


class ChallengeBody(schemas.Request):
    address: str
    chain_id: int


class VerifyBody(schemas.Request):
    nonce: str
    signature: str


class TokenBody(schemas.Request):
    token: str


class TenantBody(schemas.Request):
    tenant_id: str


def sessions_of(state: State) -> ConsoleSessions:
    """The app's console sessions service, made on first use (it needs only what the lifespan built)."""
    service = getattr(state, "console_sessions", None)
    if service is None:
        service = state.console_sessions = ConsoleSessions(state.db, state.ledger, state.authenticator)
    return service


def page(template: str, status_code: int = 200, **values: Any) -> Response[str]:
    html = _templates.get_template(template).render(**values)
    return Response(
        html, status_code=status_code, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS
    )


def answer(value: Any, cookies: list[Cookie] | None = None) -> Response[Any]:
    return Response(value, headers=SECURITY_HEADERS, cookies=cookies or [])


def session_cookie(request: Request, token: str | None) -> Cookie:
    """HttpOnly, SameSite=Strict, path /console; Secure when served over https."""
    return Cookie(
        key=COOKIE,
        value=token or "",
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=int(SESSION_TTL.total_seconds()) if token else 0,
    )


def check_origin(request: Request) -> None:
    """Raises Forbidden (`cross_origin`) unless a state change comes from this origin's page."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin != own:
        raise Forbidden("state changes must come from the console's own page", code="cross_origin")


def check_csrf(request: Request, session: ConsoleSession) -> None:
    """Raises Forbidden (`csrf_token_invalid`) unless the header holds the session's CSRF token."""
    check_origin(request)
    sent = request.headers.get("x-csrf-token", "")
    if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise Forbidden("missing or wrong X-CSRF-Token", code="csrf_token_invalid")


async def current(request: Request) -> ConsoleSession | None:
    return await sessions_of(request.app.state).lookup(request.cookies.get(COOKIE))


async def bound(request: Request) -> ConsoleSession | None:
    """The session of a page that needs a tenant, or None (the page then sends to sign-in)."""
    session = await current(request)
    return session if session is not None and session.tenant_id is not None else None


SIGN_IN = "/console/"


class ConsoleController(Controller):
    path = "/console"
    include_in_schema = False

    @get("/")
    async def home(self, request: Request) -> Response[Any]:
        session = await current(request)
        if session is None:
            return page("signin.html", title="Sign in", session=None)
        if session.tenant_id is None:
            return page("tenant.html", title="Choose a tenant", session=session)
        return Redirect("/console/queue?view=awaiting" if session.address else "/console/queue?view=pending")

    @get("/static/{name:str}")
    async def static(self, name: FromPath[str]) -> Response[bytes]:
        if name not in STATIC:
            raise NotFound(f"no console asset {name!r}", code="asset_not_found")
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
        return Response((HERE / "static" / name).read_bytes(), media_type=STATIC[name], headers=headers)

    @post("/sign-in/challenge", status_code=200)
    async def challenge(self, request: Request, data: JSONBody[ChallengeBody]) -> Response[Any]:
        """The EIP-4361 message to sign for `{address, chain_id}`."""
        check_origin(request)
        netloc = request.url.netloc
        uri = f"{request.url.scheme}://{netloc}/console"
        message = await sessions_of(request.app.state).challenge(netloc, uri, data.address, data.chain_id)
        return answer({"nonce": message.nonce, "message": message.text})

    @post("/sign-in/verify", status_code=200)
    async def verify(self, request: Request, data: JSONBody[VerifyBody]) -> Response[Any]:
        """`{nonce, signature}`: open a session (cookie) when the signature holds."""
        check_origin(request)
        token, session = await sessions_of(request.app.state).sign_in(data.nonce, data.signature)
        return answer({"next": "/console/", "tenant_id": session.tenant_id}, [session_cookie(request, token)])

    @post("/sign-in/token", status_code=200)
    async def token(self, request: Request, data: JSONBody[TokenBody]) -> Response[Any]:
        """`{token}`: a tenant admin's or auditor's API token, exchanged for a read-only session."""
        check_origin(request)
        token, session = await sessions_of(request.app.state).exchange_token(data.token)
        return answer({"next": "/console/", "tenant_id": session.tenant_id}, [session_cookie(request, token)])

    @post("/tenant", status_code=200)
    async def choose_tenant(self, request: Request, data: JSONBody[TenantBody]) -> Response[Any]:
        session = await current(request)
        if session is None:
            raise Unauthenticated("sign in to the console first", code="console_session_required")
        check_csrf(request, session)
        await sessions_of(request.app.state).bind(session, data.tenant_id)
        return answer({"next": "/console/"})

    @post("/sign-out", status_code=200)
    async def sign_out(self, request: Request) -> Response[Any]:
        session = await current(request)
        if session is not None:
            check_csrf(request, session)
            await sessions_of(request.app.state).sign_out(session)
        return answer({"next": "/console/"}, [session_cookie(request, None)])

    @get("/queue")
    async def queue(
        self,
        request: Request,
        state: State,
        view: FromQuery[str] = "awaiting",
        cursor: FromQuery[str | None] = None,
    ) -> Response[Any]:
        session = await bound(request)
        if session is None:
            return Redirect(SIGN_IN)
        view = view if view in HEADINGS else "awaiting"
        query = request.query_params
        filters = {k: (query.get(k) or None) for k in ("status", "agent", "type", "from", "to")}
        error, rows, next_cursor = None, [], None
        try:
            rows, next_cursor = await views.queue(state.actions, session, view, filters, cursor or None)
        except AppError as exc:
            if exc.status >= 500:
                raise
            error = exc.detail
        bulk_roles = sorted({role for row in rows for role in row["roles"]})
        next_query = {**{k: v for k, v in filters.items() if v}, "view": view, "cursor": next_cursor or ""}
        return page(
            "queue.html",
            title=HEADINGS[view],
            heading=HEADINGS[view],
            session=session,
            view=view,
            rows=rows,
            error=error,
            filters=filters,
            statuses=DECIDED_STATUSES,
            bulk_roles=bulk_roles,
            next_cursor=next_cursor,
            next_link="/console/queue?" + "&".join(f"{k}={_quote(v)}" for k, v in next_query.items()),
            awaiting_count=len(rows)
            if view == "awaiting"
            else await views.awaiting_count(state.actions, session),
            live=await log_size(state, session),
        )

    @get("/actions/{action_id:str}")
    async def action(self, request: Request, state: State, action_id: FromPath[str]) -> Response[Any]:
        session = await bound(request)
        if session is None:
            return Redirect(SIGN_IN)
        record = await state.actions.get(session.reader(), action_id)
        row = views.row_of(record, session, utc_now())
        answered = any(a.address == session.address for a in record.approvals)
        tenant = await state.tenants.get_tenant(session.tenant_id)
        return page(
            "action.html",
            title=record.summary or record.action_id,
            session=session,
            row=row,
            answered=answered,
            chain_id=tenant.chain_id,
            awaiting_count=await views.awaiting_count(state.actions, session),
            live=await log_size(state, session),
        )

    @get("/actions/{action_id:str}/audit")
    async def audit(self, request: Request, state: State, action_id: FromPath[str]) -> Response[Any]:
        session = await bound(request)
        if session is None:
            return Redirect(SIGN_IN)
        bundle = await state.audit.action_bundle(session.reader(), action_id)
        entries = []
        for item in bundle["entries"]:
            entry = json.loads(base64.b64decode(item["entry"]))
            entries.append(
                {**entry, "seq": item["index"], "data": json.dumps(entry.get("data"), sort_keys=True)}
            )
        return page(
            "audit.html",
            title=f"Audit of {action_id}",
            session=session,
            action_id=action_id,
            entries=entries,
            checkpoint=bundle["checkpoint"],
            awaiting_count=None,
        )

    @get("/actions/{action_id:str}/proof")
    async def proof(self, request: Request, state: State, action_id: FromPath[str]) -> Response[Any]:
        session = await bound(request)
        if session is None:
            return Redirect(SIGN_IN)
        bundle = await state.audit.action_bundle(session.reader(), action_id)
        headers = {
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{action_id}-proof.json"',
        }
        return Response(bundle, headers=headers)

    @get("/live")
    async def live(
        self,
        request: Request,
        state: State,
        after: FromQuery[int | None] = None,
        action_id: FromQuery[str | None] = None,
    ) -> Response[Any] | Stream:
        """Server-Sent Events: `changed` each time an action (`action_id`'s, when given) changes
        after `after` (or the browser's Last-Event-ID); see gateway/console/live.py."""
        session = await bound(request)
        if session is None:
            raise Unauthenticated("sign in to the console first", code="console_session_required")
        resume = request.headers.get("last-event-id", "").strip()
        start = int(resume) if resume.isdigit() else after
        if start is None or not -1 <= start < 2**63:
            start = await log_size(state, session) - 1

        async def still_signed_in() -> bool:
            return await current(request) is not None

        wanted = page_filter(action_id)
        body = live_changes(state.events.hub, session.tenant_id, start, wanted, still_signed_in)
        headers = {**SECURITY_HEADERS, "X-Accel-Buffering": "no"}
        return Stream(body, media_type="text/event-stream", headers=headers)


async def log_size(state: State, session: ConsoleSession) -> int:
    """How many entries the tenant's log has: a page carries it, and reloads when it changes."""
    async with state.db.read() as conn:
        head = await conn.fetchrow("SELECT size FROM audit_heads WHERE tenant_id = ?", session.tenant_id)
    return int(head["size"]) if head else 0


def _quote(value: str) -> str:
    return quote(value, safe="")
