"""Ethereum JSON-RPC over HTTP for the rails: one request, and what its failures mean.

No answer (a timeout, a refused connection, a non-200, something that is not JSON-RPC) is
`RailUnavailable`: the outcome is unknown. A JSON-RPC error answer is `RpcError`: the node
received the request and refused it (a revert carries its data).
"""

from __future__ import annotations

from typing import Any

import httpx

from gateway.rails.base import RailUnavailable
from gateway.rails.outbound import pin


class RpcError(Exception):
    """A JSON-RPC error answer: `code`, `message` (at most 300 characters), `data`."""

    def __init__(self, code: object, message: str, data: object) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


class JsonRpc:
    """Requests to one node through a shared HTTP client (safe for concurrent use)."""

    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        self.url = url
        self._http = http

    async def call(self, method: str, *params: Any) -> Any:
        """The result. Raises RailUnavailable (no answer) or RpcError (the node's error)."""
        target = await pin(self.url)  # connect to the address that was checked (no DNS rebinding)
        try:
            response = await self._http.post(
                target.url,
                json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                headers=target.headers,
                extensions=target.extensions,
            )
        except httpx.HTTPError as exc:
            raise RailUnavailable(f"{method}: RPC request failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise RailUnavailable(f"{method}: RPC answered HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            raise RailUnavailable(f"{method}: RPC answered without JSON") from None
        if not isinstance(answer, dict):
            raise RailUnavailable(f"{method}: RPC answered something that is not JSON-RPC")
        error = answer.get("error")
        if isinstance(error, dict):
            raise RpcError(error.get("code"), str(error.get("message", ""))[:300], error.get("data"))
        if "result" not in answer:
            raise RailUnavailable(f"{method}: RPC answer has no result")
        return answer["result"]

    async def read(self, method: str, *params: Any) -> Any:
        """A read that must answer: a node's error is an outage too (RailUnavailable)."""
        try:
            return await self.call(method, *params)
        except RpcError as exc:
            raise RailUnavailable(f"{method}: RPC error {exc.code}: {exc.message}") from None
