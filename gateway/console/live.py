"""The console's live updates: a Server-Sent Events stream of "the tenant's log grew".

A page opens it (EventSource) after the log position it was rendered at; each time the
tenant's log grows past it the stream says `event: changed` with the new position, and the
page reloads (or tells the user, when they are typing). It follows the events hub
(`gateway.events.hub`), the same view of the log the API's event stream is, so nothing is
polled; the session is looked up again every RECHECK_SECONDS and the stream ends with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from gateway.errors import AppError
from gateway.events.hub import EventHub, HubClosed
from gateway.events.view import EventFilter, Reader

HEARTBEAT_SECONDS = 15.0
RECHECK_SECONDS = 30.0


async def changes(
    hub: EventHub,
    tenant_id: str,
    after: int,
    still_signed_in: Callable[[], Awaitable[bool]],
    heartbeat: float = HEARTBEAT_SECONDS,
) -> AsyncIterator[bytes]:
    """SSE frames: `changed` with the log position each time the log grows past `after`."""
    yield b"retry: 3000\n: watching after %d\n\n" % after
    waited = 0.0
    try:
        async with hub.subscribe(tenant_id, Reader(tenant_id), EventFilter(), after) as subscription:
            while True:
                before = subscription.position
                await subscription.next(heartbeat, limit=100)
                if subscription.position > before:
                    position = subscription.position
                    yield b'event: changed\nid: %d\ndata: {"seq": %d}\n\n' % (position, position)
                else:
                    yield b": heartbeat\n\n"
                    waited += heartbeat
                if waited >= RECHECK_SECONDS:
                    waited = 0.0
                    if not await still_signed_in():
                        yield b"event: signed-out\ndata: {}\n\n"
                        return
    except HubClosed:
        return
    except AppError:  # the database away for a moment: the browser reconnects after `retry`
        return
