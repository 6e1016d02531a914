"""An in-process Ethereum chain for tests, served as JSON-RPC over HTTP on 127.0.0.1.

EIP-1271 checks reach a contract wallet through an RPC URL, as the gateway reaches a real node;
tests give them the URL of :class:`ContractChain`: eth-tester's py-evm backend (web3's
``EthereumTesterProvider``) behind a ``ThreadingHTTPServer`` in a daemon thread. Each JSON-RPC
request (or batch) is answered by the provider's ``make_request`` through the provider's own
middleware (which fills ``from`` and maps eth-tester's Python values to JSON-RPC names), then
encoded as JSON-RPC does (integers as hex quantities, bytes as hex data).

    with ContractChain() as chain:                       # or the `contract_chain` fixture
        wallet = chain.deploy_owner_wallet([alice, bob, carol], threshold=2)
        await check_contract_signature(chain.rpc_url, wallet, digest, signature)

Also here: endpoints that misbehave the way real ones do (:func:`canned_rpc`, :func:`silent_rpc`,
:func:`unused_rpc_url`), for the unavailable-RPC paths.
"""

from __future__ import annotations

import ast
import json
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_JSON = {"Content-Type": "application/json"}
OWNER_WALLET_ARTIFACT = Path(__file__).parent / "contracts" / "OwnerWallet.json"
ARTIFACTS = Path(__file__).parent.parent / "contracts" / "artifacts"
VERDICT_ACCOUNT_ARTIFACT = ARTIFACTS / "VerdictAccount.json"
TEST_TOKEN_ARTIFACT = ARTIFACTS / "TestToken.json"

# Creation code that returns the runtime code appended to it: PUSH2 len, DUP1, PUSH1 12 (this
# prefix's length), PUSH1 0, CODECOPY, PUSH1 0, RETURN.
_RETURN_RUNTIME_PREFIX = "61{length:04x}80600c6000396000f3"


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


class ContractChain:
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
        self._server = _serve(self._answer_body)
        self.rpc_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = _serving_thread(self._server, "contract-chain")

    def __enter__(self) -> ContractChain:
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

    def deploy_owner_wallet(self, owners: Sequence[str], threshold: int) -> str:
        """Deploy ``tests/contracts/OwnerWallet.sol``; return its EIP-55 address."""
        artifact = json.loads(OWNER_WALLET_ARTIFACT.read_text(encoding="utf-8"))
        with self._lock:
            contract = self._w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
            tx_hash = contract.constructor(list(owners), threshold).transact(self._deployment())
            return self._deployed_address(tx_hash)

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

    def deploy_runtime_code(self, runtime: bytes) -> str:
        """Deploy a contract whose code is exactly ``runtime`` (hand-written EVM for edge cases)."""
        init = bytes.fromhex(_RETURN_RUNTIME_PREFIX.format(length=len(runtime))) + runtime
        with self._lock:
            tx_hash = self._w3.eth.send_transaction({**self._deployment(), "data": init})
            return self._deployed_address(tx_hash)

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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    answer: Any


def _serve(answer_body) -> _Server:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.answer = lambda body: (200, _JSON, json.dumps(answer_body(body)).encode())
    return server


def _serving_thread(server: _Server, name: str) -> threading.Thread:
    # A short poll interval: shutdown() waits up to one interval for serve_forever to notice.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    )
    thread.start()
    return thread


@contextmanager
def owner_wallet_chain(owners: Sequence[str], threshold: int) -> Iterator[tuple[str, str]]:
    """Start a chain, deploy an OwnerWallet; yield ``(rpc_url, wallet_address)``; stop the chain."""
    with ContractChain() as chain:
        yield chain.rpc_url, chain.deploy_owner_wallet(owners, threshold)


@contextmanager
def canned_rpc(status: int, body: bytes, headers: Mapping[str, str] = _JSON) -> Iterator[str]:
    """An HTTP endpoint that answers every POST with ``status``, ``headers`` and ``body``; yields its URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.answer = lambda _body: (status, headers, body)
    thread = _serving_thread(server, "canned-rpc")
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def silent_rpc() -> Iterator[str]:
    """An endpoint that accepts connections and reads requests but never answers; yields its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # closing a socket does not wake a blocked accept() on Linux
    held: list[socket.socket] = []
    stopped = threading.Event()

    def accept() -> None:
        while not stopped.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # the listener was closed
                return
            held.append(connection)

    thread = threading.Thread(target=accept, name="silent-rpc", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stopped.set()
        listener.close()
        thread.join(timeout=5)
        for connection in held:
            connection.close()


def unused_rpc_url() -> str:
    """A URL on a local port nobody listens on (connections are refused)."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
