"""The console's live updates: a Server-Sent Events stream of "an action changed".

A page opens it (EventSource) after the log position it was rendered at; each time an entry
about an action (of the page's action, on an action's page) lands past it, the stream says
`event: changed` with the new position, and the page reloads (or tells the user, when they are typing). It follows the events hub
(`gateway.events.hub`), the same view of the log the API's event stream is, so nothing is
polled; the session is looked up again every RECHECK_SECONDS and the stream ends with it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

from gateway.errors import AppError
from gateway.events.hub import EventHub, HubClosed
from gateway.events.view import EventFilter, Reader

HEARTBEAT_SECONDS = 15.0
RECHECK_SECONDS = 30.0


# What a console page shows: actions, their approvals, verdicts and executions (not sign-ins,
# keys or webhooks, which would reload every open page for nothing).
SHOWN = "action.*,approval.*,verdict.*,execution.*"


def page_filter(action_id: str | None) -> EventFilter:
    """What a page reloads on: SHOWN entries (of `action_id` only, when given). Raises
    InvalidRequest for a malformed action id."""
    return EventFilter.parse(SHOWN, action_id)


async def changes(
    hub: EventHub,
    tenant_id: str,
    after: int,
    wanted: EventFilter,
    still_signed_in: Callable[[], Awaitable[bool]],
    heartbeat: float = HEARTBEAT_SECONDS,
) -> AsyncIterator[bytes]:
    """SSE frames: `changed` with the log position each time an entry `wanted` (`page_filter`)
    lands after `after`; the position moves past others silently."""
    yield b"retry: 3000\n: watching after %d\n\n" % after
    checked = time.monotonic()
    try:
        async with hub.subscribe(tenant_id, Reader(tenant_id), wanted, after) as subscription:
            while True:
                if await subscription.next(heartbeat, limit=100):
                    position = subscription.position
                    yield b'event: changed\nid: %d\ndata: {"seq": %d}\n\n' % (position, position)
                else:
                    yield b": heartbeat\n\n"
                if time.monotonic() - checked >= RECHECK_SECONDS:
                    checked = time.monotonic()
                    if not await still_signed_in():
                        yield b"event: signed-out\ndata: {}\n\n"
                        return
    except HubClosed:
        return
    except AppError:  # the database away for a moment: the browser reconnects after `retry`
        return
