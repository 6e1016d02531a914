"""Load shedding: each worker has a bounded number of requests in progress and a short, bounded
queue for more; the rest are answered at once with 503 `overloaded` and `Retry-After`.

Under a flood (many times the connections the machine can serve) a gateway that queues without
bound answers everyone late, and clients time out and retry into the same queue. Instead each
worker process admits at most `max_in_flight` requests at a time; up to `max_queued` more wait,
first come first served, at most `queue_wait` seconds for a slot; anyone else, or a waiter whose
time is up, gets 503 `overloaded` (problem+json, `Retry-After: 1`) without anything being
decided or written. Batch proposals have a smaller limit of their own (`BatchGate`). The
admitted requests keep the worker at its full rate, and no request
waits long: the wait is bounded, and so is the work ahead of an admitted one. (The tenant's
chain writer has its own bound, `gateway.ledger.MAX_PENDING_UNITS`, for batches.)

A request is admitted only once its body has arrived (up to the body size limit): a client
trickling its body holds no slot, only its connection, which `gateway.slow_clients` bounds.

Not counted: `GET /health` (load balancers must see a busy worker as alive) and the events
routes (a long poll or a stream waits on the log, it does not work), nor WebSockets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from gateway.errors import Overloaded

Message = dict[str, Any]
RETRY_AFTER_SECONDS = 1
_encode = msgspec.json.Encoder().encode


def is_exempt(path: str) -> bool:
    """Requests that never count against the limit (see the module)."""
    return path == "/health" or "/events" in path


class Admission:
    """ASGI middleware for one worker process (all of it runs on the worker's event loop).

    `active` requests hold a slot; `waiting` are queued futures, handed a slot in order."""

    def __init__(
        self, app: Any, *, max_in_flight: int, max_queued: int, queue_wait: float, max_body_bytes: int
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_queued = max_queued
        self.queue_wait = queue_wait
        self.max_body_bytes = max_body_bytes
        self.active = 0
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.refused = 0  # requests answered 503 `overloaded` by this worker, for operators

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.max_in_flight <= 0 or is_exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        receive = await self._buffered(scope, receive)
        if not await self._admit():
            self.refused += 1
            await refuse(scope, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()

    async def _admit(self) -> bool:
        """Take a slot, waiting at most `queue_wait` in a queue of at most `max_queued`."""
        if self.active < self.max_in_flight and not self.waiting:
            self.active += 1
            return True
        if len(self.waiting) >= self.max_queued or self.queue_wait <= 0:
            return False
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        try:
            await asyncio.wait((turn,), timeout=self.queue_wait)
        finally:
            if not turn.done():  # time is up (or the client went away): leave the queue
                turn.cancel()
                self.waiting.remove(turn)
        return not turn.cancelled()  # a slot was handed over (`_release` kept it counted)

    def _release(self) -> None:
        """Hand the slot to the first waiter still waiting, or free it."""
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.active -= 1

    async def _buffered(self, scope: dict[str, Any], receive: Any) -> Any:
        """Read the request's body (at most `max_body_bytes` + 1 bytes of it) before admission;
        returns the `receive` that replays it to the app. A failure to read it (a body deadline,
        a disconnect) is replayed too, for the app to answer as it always does."""
        headers = dict(scope["headers"])
        if b"content-length" not in headers and b"transfer-encoding" not in headers:
            return receive
        messages: list[Message] = []
        failure: BaseException | None = None
        size = 0
        try:
            while size <= self.max_body_bytes:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
                size += len(message.get("body", b""))
        except Exception as exc:  # e.g. RequestTimeout from gateway.slow_clients
            failure = exc
        pending = deque(messages)

        async def replay() -> Message:
            if pending:
                return pending.popleft()
            if failure is not None:
                raise failure
            return await receive()

        return replay


async def refuse(scope: dict[str, Any], send: Any) -> None:
    """Answer 503 `overloaded` (RFC 9457 problem+json, as `gateway.problems` would)."""
    context = scope.get("state", {}).get("context")
    error = Overloaded("the gateway is at capacity; retry after Retry-After seconds")
    body = _encode(
        {
            "type": f"urn:verdict:problem:{error.code}",
            "title": error.title,
            "status": error.status,
            "detail": error.detail,
            "code": error.code,
            "request_id": getattr(context, "request_id", None),
        }
    )
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BatchGate:
    """At most `limit` batch proposals in progress per worker: a batch is up to a hundred
    proposals' work, so the request count of `Admission` would let a few dozen of them hold a
    worker for seconds. Others wait at most `wait` seconds for their turn, then Overloaded."""

    def __init__(self, limit: int, wait: float) -> None:
        self.limit = limit
        self.wait = wait
        self._slots = asyncio.Semaphore(max(1, limit))

    @contextlib.asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Raises Overloaded when no slot frees within `wait` seconds (nothing was done)."""
        if self.limit <= 0:
            yield
            return
        try:
            if self.wait <= 0 and self._slots.locked():
                raise TimeoutError
            async with asyncio.timeout(self.wait if self.wait > 0 else None):
                await self._slots.acquire()
        except TimeoutError:
            raise Overloaded(
                "the gateway is at capacity for batch proposals; retry after Retry-After seconds"
            ) from None
        try:
            yield
        finally:
            self._slots.release()
