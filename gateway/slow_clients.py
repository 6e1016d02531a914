"""A deadline for reading a request's body, so that a client trickling it cannot hold a
connection (and a worker's connection slot) for as long as it likes.

granian times out slow request *headers* (gateway.serving); nothing in the server times out a
slow body. The deadline runs from the moment the app receives the request until its last body
chunk; past it, reading the body raises RequestTimeout (408 `body_timeout`, `Connection: close`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.errors import RequestTimeout

Message = dict[str, Any]


class BodyDeadline:
    """ASGI middleware: `receive` raises RequestTimeout once `seconds` have passed before the
    whole body arrived. After the body, `receive` is passed through untouched (it then only
    waits for the disconnect, which may take as long as the response does)."""

    def __init__(self, app: Any, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.seconds <= 0:
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"the request body did not arrive within {self.seconds:g} seconds",
                    code="body_timeout",
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, timed_receive, send)
