"""An in-process Ethereum chain for tests (:class:`gateway.devchain.DevChain`), and endpoints that
misbehave the way real ones do.

EIP-1271 checks reach a contract wallet through an RPC URL, as the gateway reaches a real node;
tests give them the URL of :class:`ContractChain`:

    with ContractChain() as chain:                       # or the `contract_chain` fixture
        wallet = chain.deploy_owner_wallet([alice, bob, carol], threshold=2)
        await check_contract_signature(chain.rpc_url, wallet, digest, signature)

Also here: :func:`canned_rpc`, :func:`silent_rpc`, :func:`unused_rpc_url`, for the
unavailable-RPC paths.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from gateway.devchain import (
    JSON_HEADERS,
    TEST_TOKEN_ARTIFACT,
    VERDICT_ACCOUNT_ARTIFACT,
    DevChain,
    JsonHandler,
    JsonServer,
    serving_thread,
)

OWNER_WALLET_ARTIFACT = Path(__file__).parent / "contracts" / "OwnerWallet.json"
__all__ = ["TEST_TOKEN_ARTIFACT", "VERDICT_ACCOUNT_ARTIFACT", "ContractChain"]

# Creation code that returns the runtime code appended to it: PUSH2 len, DUP1, PUSH1 12 (this
# prefix's length), PUSH1 0, CODECOPY, PUSH1 0, RETURN.
_RETURN_RUNTIME_PREFIX = "61{length:04x}80600c6000396000f3"


class ContractChain(DevChain):
    """A :class:`gateway.devchain.DevChain` with the test-only deployments (EIP-1271 wallets,
    hand-written code)."""

    def deploy_owner_wallet(self, owners: Sequence[str], threshold: int) -> str:
        """Deploy ``tests/contracts/OwnerWallet.sol``; return its EIP-55 address."""
        return self.deploy(OWNER_WALLET_ARTIFACT, list(owners), threshold)

    def deploy_runtime_code(self, runtime: bytes) -> str:
        """Deploy a contract whose code is exactly ``runtime`` (hand-written EVM for edge cases)."""
        init = bytes.fromhex(_RETURN_RUNTIME_PREFIX.format(length=len(runtime))) + runtime
        with self._lock:
            tx_hash = self._w3.eth.send_transaction({**self._deployment(), "data": init})
            return self._deployed_address(tx_hash)


@contextmanager
def owner_wallet_chain(owners: Sequence[str], threshold: int) -> Iterator[tuple[str, str]]:
    """Start a chain, deploy an OwnerWallet; yield ``(rpc_url, wallet_address)``; stop the chain."""
    with ContractChain() as chain:
        yield chain.rpc_url, chain.deploy_owner_wallet(owners, threshold)


@contextmanager
def canned_rpc(status: int, body: bytes, headers: Mapping[str, str] = JSON_HEADERS) -> Iterator[str]:
    """An HTTP endpoint that answers every POST with ``status``, ``headers`` and ``body``; yields its URL."""
    server = JsonServer(("127.0.0.1", 0), JsonHandler)
    server.answer = lambda _body: (status, headers, body)
    thread = serving_thread(server, "canned-rpc")
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
