"""Events of a tenant: a page (and long poll), Server-Sent Events, a WebSocket.

All three are views of the tenant's audit log (`gateway.events`), resumable from any seq. Who
sees what is `gateway.authz`'s table (tenant readers and agents) and `gateway.events.view`
(an agent: its own actions' events only). A stream re-checks its caller's credential every
REAUTH_SECONDS, so a revoked or expired key does not keep one open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, WebSocket, get, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Stream

from gateway.auth import Principal
from gateway.authz import authorize_websocket, principal_of, websocket_authorization
from gateway.errors import AppError, InvalidRequest, Unavailable
from gateway.events.hub import EventHub, HubClosed, Subscription
from gateway.events.view import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    EventFilter,
    EventPage,
    Reader,
    log_size,
    read_page,
)
from gateway.problems import PROBLEM_RESPONSES

log = logging.getLogger("verdict.events")

MAX_WAIT_SECONDS = 55.0
HEARTBEAT_SECONDS = 15.0
REAUTH_SECONDS = 30.0
SUBSCRIBE_TIMEOUT_SECONDS = 30.0
DEFAULT_WINDOW = 1000  # WebSocket: events sent and not yet acknowledged, at most
MAX_WINDOW = 10_000
_SEQ = 2**63 - 1
Position = Annotated[int | None, QueryParameter(ge=-1, le=_SEQ)]
_BEARER = [{"bearer": []}]
_encode = msgspec.json.Encoder().encode


async def _start(state: State, tenant_id: str, after: int | None, last_event_id: str | None) -> int:
    """Where a stream starts: `Last-Event-ID` (a browser's reconnect), else `after`, else the
    present (the last committed seq). Raises InvalidRequest, NotFound (`tenant_not_found`)."""
    if last_event_id:
        try:
            after = int(last_event_id.strip())
        except ValueError:
            raise InvalidRequest("Last-Event-ID must be a seq", code="invalid_range") from None
        if not -1 <= after <= _SEQ:
            raise InvalidRequest("Last-Event-ID must be a seq", code="invalid_range")
    async with state.db.read() as conn:
        size = await log_size(conn, tenant_id)
    return size - 1 if after is None else after


class Credential:
    """A stream's caller, re-authenticated every REAUTH_SECONDS."""

    def __init__(self, state: State, authorization: str | None) -> None:
        self.state, self.authorization = state, authorization
        self.checked = time.monotonic()

    def due(self) -> bool:
        """Whether the next `check` asks the database (a stream calls it after every chunk)."""
        return time.monotonic() - self.checked >= REAUTH_SECONDS

    async def check(self) -> None:
        """Raises Unauthenticated once the key was revoked or expired."""
        if self.due():
            await self.state.authenticator.authenticate(self.authorization)
            self.checked = time.monotonic()


def _error_frame(error: AppError) -> bytes:
    body = {"code": error.code, "detail": error.detail, "status": error.status}
    return b"event: error\ndata: %s\n\n" % _encode(body)


async def _sse(
    hub: EventHub,
    credential: Credential,
    tenant: str,
    reader: Reader,
    wanted: EventFilter,
    after: int,
    heartbeat: float,
) -> AsyncIterator[bytes]:
    # `retry`: how long a browser waits before reconnecting (with Last-Event-ID)
    yield b"retry: 1000\n: subscribed after %d\n\n" % after
    sent = after
    try:
        async with hub.subscribe(tenant, reader, wanted, after) as subscription:
            while True:
                frames = await subscription.next_frames(heartbeat)
                if frames:
                    sent = subscription.position
                    yield frames
                elif subscription.position > sent:  # entries filtered out: move the client's Last-Event-ID on
                    sent = subscription.position
                    yield b": heartbeat\nid: %d\n\n" % sent
                else:
                    yield b": heartbeat\n\n"
                if credential.due():
                    await credential.check()
    except HubClosed:
        return
    except AppError as error:  # a revoked key, the database away: say so; the client resumes
        yield _error_frame(error)


class EventsController(Controller):
    path = "/v1/tenants/{tenant_id:str}/events"
    tags = ["events"]
    security = _BEARER

    @get(
        "",
        responses=PROBLEM_RESPONSES,
        description=(
            "The events after seq `after` (-1, the default: from the first) that the caller may see,"
            " in log order, at most `limit`. `types` (comma-separated; `execution.*` matches a prefix),"
            " `action_id` and `agent_id` filter. With `wait` (seconds, at most 55) and nothing to"
            " return yet, the answer waits until an event arrives. Resume with `after=next_after`."
        ),
    )
    async def page(
        self,
        state: State,
        request: Request,
        tenant_id: FromPath[str],
        after: Annotated[int, QueryParameter(ge=-1, le=_SEQ)] = -1,
        types: FromQuery[str | None] = None,
        action_id: FromQuery[str | None] = None,
        agent_id: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        wait: Annotated[float, QueryParameter(ge=0, le=MAX_WAIT_SECONDS)] = 0,
    ) -> EventPage:
        reader = Reader.of(principal_of(request), tenant_id)
        wanted = EventFilter.parse(types, action_id, agent_id)
        hub: EventHub = state.events.hub
        if wait <= 0:
            return await read_page(state.db, tenant_id, reader, wanted, after, limit, hub.owners)
        try:
            async with hub.subscribe(tenant_id, reader, wanted, after) as subscription:
                batch = await subscription.next(wait, limit)
                return EventPage([item.event for item in batch], subscription.position, subscription.head)
        except HubClosed:
            raise Unavailable("the gateway is shutting down", code="shutting_down") from None

    @get(
        "/stream",
        media_type="text/event-stream",
        responses=PROBLEM_RESPONSES,
        description=(
            "Server-Sent Events: each event as `id: <seq>` and `data: <event JSON>`. Starts after"
            " `Last-Event-ID` (what browsers send when they reconnect), else after `after`, else at"
            " the present. Comments every `heartbeat` seconds; a heartbeat may carry `id:` alone,"
            " moving the resume position past entries the filters skipped. Same filters as the page."
        ),
    )
    async def stream(
        self,
        state: State,
        request: Request,
        tenant_id: FromPath[str],
        after: Position = None,
        types: FromQuery[str | None] = None,
        action_id: FromQuery[str | None] = None,
        agent_id: FromQuery[str | None] = None,
        heartbeat: Annotated[float, QueryParameter(ge=1, le=MAX_WAIT_SECONDS)] = HEARTBEAT_SECONDS,
    ) -> Stream:
        reader = Reader.of(principal_of(request), tenant_id)
        wanted = EventFilter.parse(types, action_id, agent_id)
        start = await _start(state, tenant_id, after, request.headers.get("last-event-id"))
        credential = Credential(state, request.headers.get("authorization"))
        body = _sse(state.events.hub, credential, tenant_id, reader, wanted, start, heartbeat)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Stream(body, media_type="text/event-stream", headers=headers)

    @websocket("/ws")
    async def socket(self, socket: WebSocket) -> None:
        """WebSocket (see docs/events.md): subscribe with filters and a position, receive events,
        acknowledge them."""
        subprotocols = [p.strip() for p in (socket.headers.get("sec-websocket-protocol") or "").split(",")]
        chosen = PROTOCOL if PROTOCOL in subprotocols else None
        try:
            principal = await authorize_websocket(socket)
        except AppError as error:
            await socket.accept(subprotocols=chosen)
            await _close_with(socket, error)
            return
        await socket.accept(subprotocols=chosen)
        session = SocketSession(socket, principal)
        try:
            await session.run()
        except WebSocketDisconnect:
            return
        except Exception:  # a socket that broke mid-send: the client resumes from its last ack
            log.info("events socket of tenant %s ended by an error", session.tenant, exc_info=True)


PROTOCOL = "verdict.events.v1"


async def _close_with(socket: WebSocket, error: AppError) -> None:
    """Send the error, then close with 4000 + its HTTP status (4401, 4403, 4404, 4503…)."""
    with contextlib.suppress(Exception):
        await socket.send_data(_encode(_error(error)).decode())
        await socket.close(code=4000 + error.status, reason=error.code[:120])


def _error(error: AppError) -> dict[str, Any]:
    return {"type": "error", "code": error.code, "detail": error.detail, "status": error.status}


class Subscribe(msgspec.Struct, tag="subscribe", forbid_unknown_fields=True):
    after: int | None = None
    types: list[str] | None = None
    action_id: str | None = None
    agent_id: str | None = None
    window: int = DEFAULT_WINDOW


class Ack(msgspec.Struct, tag="ack", forbid_unknown_fields=True):
    seq: int


class Ping(msgspec.Struct, tag="ping", forbid_unknown_fields=True):
    pass


_decode_message = msgspec.json.Decoder(Subscribe | Ack | Ping).decode


class SocketSession:
    """One WebSocket: a receiver task reads the client's messages; this task sends events
    while fewer than `window` are unacknowledged, and heartbeats when idle."""

    def __init__(self, socket: WebSocket, principal: Principal) -> None:
        self.socket = socket
        self.state: State = socket.app.state
        self.tenant: str = socket.path_params["tenant_id"]
        self.reader = Reader.of(principal, self.tenant)
        self.credential = Credential(self.state, websocket_authorization(socket))
        self.request: Subscribe | None = None
        self.unacked: deque[int] = deque()
        self.subscribed = asyncio.Event()  # set by each subscribe message
        self.acked = asyncio.Event()  # set by each acknowledgement

    async def run(self) -> None:
        """Raises WebSocketDisconnect when the client goes away."""
        receiver = asyncio.get_running_loop().create_task(self._receive())
        try:
            await self._send_loop(receiver)
        finally:
            receiver.cancel()
            with contextlib.suppress(BaseException):
                await receiver

    async def _receive(self) -> None:
        while True:
            text = await self.socket.receive_data(mode="text")
            try:
                message = _decode_message(text)
                if isinstance(message, Subscribe):
                    _check_subscribe(message)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await self._send(_error(_invalid(str(exc))))
                continue
            except AppError as error:
                await self._send(_error(error))
                continue
            if isinstance(message, Subscribe):
                self.request = message
                self.subscribed.set()
            elif isinstance(message, Ack):
                while self.unacked and self.unacked[0] <= message.seq:
                    self.unacked.popleft()
                self.acked.set()
            else:
                await self._send({"type": "pong"})

    async def _send_loop(self, receiver: asyncio.Task[None]) -> None:
        try:
            if not await self._wait([self.subscribed], receiver, SUBSCRIBE_TIMEOUT_SECONDS):
                raise InvalidRequest("send a subscribe message first", code="subscribe_expected")
            while True:
                request = self.request
                assert request is not None
                self.subscribed.clear()
                start = await _start(self.state, self.tenant, request.after, None)
                wanted = EventFilter.parse(request.types, request.action_id, request.agent_id)
                self.unacked.clear()
                async with self.state.events.hub.subscribe(self.tenant, self.reader, wanted, start) as sub:
                    await self._send({"type": "subscribed", "after": start})
                    await self._follow(sub, request.window, receiver)
        except HubClosed:
            await _close_with(self.socket, Unavailable("the gateway is shutting down", code="shutting_down"))
        except AppError as error:
            await _close_with(self.socket, error)

    async def _follow(self, sub: Subscription, window: int, receiver: asyncio.Task[None]) -> None:
        """Send events until the client subscribes again (then return)."""
        loop = asyncio.get_running_loop()
        while not self.subscribed.is_set():
            room = window - len(self.unacked)
            if room <= 0:  # the client is behind: wait for its acknowledgements
                self.acked.clear()
                if not await self._wait([self.acked, self.subscribed], receiver, HEARTBEAT_SECONDS):
                    await self._send({"type": "heartbeat", "position": sub.position})
                continue
            following = loop.create_task(sub.next(HEARTBEAT_SECONDS, room))
            await self._wait([self.subscribed], receiver, None, following)
            if not following.done():  # subscribed again: this subscription ends
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await following
                return
            batch = following.result()
            for item in batch:
                await self.socket.send_data(b'{"type":"event","event":%s}' % item.json, mode="text")
                self.unacked.append(item.seq)
            if not batch:
                await self._send({"type": "heartbeat", "position": sub.position})
            await self.credential.check()

    async def _wait(
        self,
        signals: list[asyncio.Event],
        receiver: asyncio.Task[None],
        timeout: float | None,
        work: asyncio.Task[Any] | None = None,
    ) -> bool:
        """Wait for one of `signals` (True), `work` to finish or `timeout` (False). Raises
        WebSocketDisconnect when the client went away."""
        loop = asyncio.get_running_loop()
        waiting = {loop.create_task(signal.wait()) for signal in signals}
        tasks = waiting | {receiver} | ({work} if work is not None else set())
        try:
            await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiting:
                task.cancel()
        if receiver.done():
            if work is not None:
                work.cancel()
            _raise_if_gone(receiver)
        return any(signal.is_set() for signal in signals)

    async def _send(self, message: dict[str, Any]) -> None:
        await self.socket.send_data(_encode(message).decode())


def _raise_if_gone(receiver: asyncio.Task[None]) -> None:
    if receiver.done():
        exc = receiver.exception() if not receiver.cancelled() else None
        raise exc if exc is not None else WebSocketDisconnect(detail="receiver ended")


def _invalid(detail: str) -> InvalidRequest:
    return InvalidRequest(f"not a message of this protocol: {detail}", code="invalid_message")


def _check_subscribe(message: Subscribe) -> None:
    """Raises InvalidRequest for a position, window or filter out of range."""
    if message.after is not None and not -1 <= message.after <= _SEQ:
        raise InvalidRequest("after must be a seq (-1: from the first entry)", code="invalid_range")
    if not 1 <= message.window <= MAX_WINDOW:
        raise InvalidRequest(f"window must be 1-{MAX_WINDOW}", code="invalid_range")
    EventFilter.parse(message.types, message.action_id, message.agent_id)
