"""A database outage answers a retryable 503 (never a 500, never a hang), and the gateway
recovers by itself when the database is back. PostgreSQL only: it is the networked backend."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from urllib.parse import urlsplit, urlunsplit

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from tests.integration.helpers import bearer, make_world, pay, verified_log


class Proxy:
    """A TCP proxy in front of PostgreSQL that can cut every connection and refuse new ones.

    It runs on its own thread and event loop: the test client drives the app through a
    blocking portal, which would starve a proxy living on the test's loop.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.up = True
        self.writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10), "proxy did not start"

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def _cut(self) -> None:
        self.up = False
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    def cut(self) -> None:
        """Abort every open connection and refuse new ones until `restore`."""
        done = threading.Event()
        self.loop.call_soon_threadsafe(lambda: (self._cut(), done.set()))
        assert done.wait(5)

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def proxied(url: str) -> tuple[Proxy, str]:
    """A Proxy in front of the PostgreSQL at `url`, and the URL that goes through it: plain TCP
    (the proxy relays bytes; the TLS upgrade is not what these tests are about)."""
    parts = urlsplit(url)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    user = f"{parts.username}@" if parts.username else ""
    return proxy, urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}", query="sslmode=disable"))


async def test_outage_answers_503_and_recovers(backend):
    if backend.name != "postgresql":
        pytest.skip("an embedded SQLite file has no connection to lose")
    proxy, via_proxy = proxied(backend.url)
    app = create_app(backend.settings(database_url=via_proxy))
    try:
        async with AsyncTestClient(app=app) as client:
            client.app_state = app.state
            world = await make_world(client)
            propose = lambda: client.post(  # noqa: E731
                f"/v1/agents/{world.agent}/propose", json=pay(), headers=bearer(world.agent_token)
            )
            assert (await propose()).status_code == 201

            proxy.cut()
            for request in (propose, lambda: client.get("/v1/actions", headers=bearer(world.auditor))):
                r = await asyncio.wait_for(request(), timeout=15)
                assert r.status_code == 503, r.text
                assert r.json()["code"] == "database_unavailable"
                assert r.headers["retry-after"] == "1"

            proxy.restore()
            statuses = [(await propose()).status_code for _ in range(3)]
            assert statuses[-1] == 201 and 500 not in statuses
            await verified_log(client, world)  # nothing half-written
    finally:
        proxy.close()
