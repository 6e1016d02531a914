"""An in-process Ethereum chain for demos and tests, served as JSON-RPC over HTTP on 127.0.0.1.

eth-tester's py-evm backend (web3's ``EthereumTesterProvider``) behind a ``ThreadingHTTPServer``
in a daemon thread, so the gateway reaches it through an RPC URL as it reaches a real node. Each
JSON-RPC request (or batch) is answered by the provider's ``make_request`` through the provider's
own middleware (which fills ``from`` and maps eth-tester's Python values to JSON-RPC names), then
encoded as JSON-RPC does (integers as hex quantities, bytes as hex data). Its accounts are
unlocked and funded; nothing is durable.

Needs the `chain` extra (``pip install -e '.[chain]'``): eth-tester and py-evm.

    with DevChain() as chain:
        address = chain.deploy(artifact_path, *constructor_arguments)
"""

from __future__ import annotations

import ast
import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

JSON_HEADERS = {"Content-Type": "application/json"}
# contracts/artifacts in a checkout (contracts/compile.mjs writes them)
ARTIFACTS = Path(__file__).resolve().parent.parent / "contracts" / "artifacts"
VERDICT_ACCOUNT_ARTIFACT = ARTIFACTS / "VerdictAccount.json"
TEST_TOKEN_ARTIFACT = ARTIFACTS / "TestToken.json"


def _to_json_rpc(value: Any) -> Any:
    """eth-tester answers in Python values; JSON-RPC writes quantities and data as hex strings."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {
            # eth-tester keeps a block's 2048-bit bloom filter as an int; JSON-RPC sends 256 bytes
            key: "0x" + item.to_bytes(256, "big").hex() if key == "logsBloom" else _to_json_rpc(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_to_json_rpc(item) for item in value]
    raise TypeError(f"cannot encode {type(value).__name__} as JSON-RPC")


def _rpc_error(request_id: Any, code: int, message: str, data: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def _failed_execution_error(request_id: Any, error: Exception) -> dict[str, Any]:
    """Answer a failed eth_call / eth_estimateGas the way geth answers a revert.

    py-evm reports every failed execution (REVERT, an invalid opcode, out of gas) as
    ``TransactionFailed`` with a text: the decoded ``Error(string)`` reason, the error's own
    message, or the ``repr`` of the raw revert data, which is the one case turned back into bytes.
    geth answers code 3 with the revert data, or -32000 "execution reverted" when there is none.
    """
    original = error.__context__ if error.__context__ is not None else error  # web3 re-raises it
    text = str(original.args[0]) if original.args else ""
    try:
        revert_data = ast.literal_eval(text) if text.startswith(("b'", 'b"')) else None
    except (ValueError, SyntaxError):
        revert_data = None
    if isinstance(revert_data, bytes):
        if revert_data:
            return _rpc_error(request_id, 3, "execution reverted", "0x" + revert_data.hex())
        return _rpc_error(request_id, -32000, "execution reverted")
    return _rpc_error(request_id, -32000, f"execution reverted: {text}")


class DevChain:
    """A py-evm chain with pre-funded accounts, answering JSON-RPC at :attr:`rpc_url`.

    Thread-safe: the HTTP server answers each connection in its own thread, and one lock
    serializes every use of the provider (py-evm is not thread-safe), including deployments.
    Nothing is durable: the chain lives in memory until :meth:`stop`.
    """

    def __init__(self) -> None:
        from eth_tester.exceptions import TransactionFailed
        from web3 import EthereumTesterProvider, Web3

        self._transaction_failed = TransactionFailed
        self._lock = threading.Lock()
        self._provider = EthereumTesterProvider()
        # No default middleware: the bridge must pass JSON-RPC through, not attribute dicts or
        # ENS lookups; the provider adds its own middleware in request_func.
        self._w3 = Web3(self._provider, middleware=[])
        self._request = self._provider.request_func(self._w3, self._w3.middleware_onion)
        self._server = serve_json(self._answer_body)
        self.rpc_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = serving_thread(self._server, "dev-chain")

    def __enter__(self) -> DevChain:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def funded_account(self) -> str:
        """An externally owned account with ether (eth-tester's first): no code at its address."""
        with self._lock:
            return self._w3.eth.accounts[0]

    def deploy(self, artifact: Path, *arguments: Any) -> str:
        """Deploy a compiled contract (a `contracts/compile.mjs` artifact); return its EIP-55 address."""
        compiled = json.loads(artifact.read_text(encoding="utf-8"))
        with self._lock:
            contract = self._w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
            tx_hash = contract.constructor(*arguments).transact(self._deployment())
            return self._deployed_address(tx_hash)

    @property
    def chain_id(self) -> int:
        with self._lock:
            return self._w3.eth.chain_id

    def time_travel(self, timestamp: int) -> None:
        """Mine the next block at ``timestamp`` (seconds; later than the latest block's)."""
        with self._lock:
            self._provider.ethereum_tester.time_travel(timestamp)

    def _deployment(self) -> dict[str, Any]:  # called with the lock held
        # Without web3's default middleware nothing estimates gas; 3M is ample for these contracts.
        return {"from": self._w3.eth.accounts[0], "gas": 3_000_000}

    def _deployed_address(self, tx_hash: bytes) -> str:  # called with the lock held
        receipt = self._w3.eth.get_transaction_receipt(tx_hash)  # eth-tester mines each transaction
        if receipt["status"] != 1:
            raise RuntimeError(f"deployment failed: {receipt}")
        return receipt["contractAddress"]

    def _answer_body(self, body: bytes) -> Any:
        try:
            request = json.loads(body)
        except ValueError:
            return _rpc_error(None, -32700, "parse error")
        if isinstance(request, list):
            return (
                [self._answer(item) for item in request]
                if request
                else _rpc_error(None, -32600, "empty batch")
            )
        return self._answer(request)

    def _answer(self, request: object) -> dict[str, Any]:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return _rpc_error(None, -32600, "invalid request")
        request_id = request.get("id")
        params = request.get("params", [])
        try:
            with self._lock:
                response = self._request(request["method"], params)
        except self._transaction_failed as error:
            return _failed_execution_error(request_id, error)
        except Exception as error:  # a node answers every request; this is its internal error
            return _rpc_error(request_id, -32602, f"{type(error).__name__}: {error}")
        if "error" in response:
            return {"jsonrpc": "2.0", "id": request_id, "error": response["error"]}
        return {"jsonrpc": "2.0", "id": request_id, "result": _to_json_rpc(response["result"])}


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: JsonServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, headers, payload = self.server.answer(body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


class JsonServer(ThreadingHTTPServer):
    daemon_threads = True
    answer: Any


def serve_json(answer_body) -> JsonServer:
    server = JsonServer(("127.0.0.1", 0), JsonHandler)
    server.answer = lambda body: (200, JSON_HEADERS, json.dumps(answer_body(body)).encode())
    return server


def serving_thread(server: JsonServer, name: str) -> threading.Thread:
    # A short poll interval: shutdown() waits up to one interval for serve_forever to notice.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    )
    thread.start()
    return thread
