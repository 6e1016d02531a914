"""A paid HTTP resource built with the `x402` package's own server code, settling on the
in-process chain: FastAPI with x402's `PaymentMiddlewareASGI`, served by uvicorn in a thread, and
x402's own facilitator (`x402Facilitator` with the EVM `exact` scheme and `FacilitatorWeb3Signer`)
verifying and settling EIP-3009 authorizations against `contracts/TestToken.sol`.

    with PaidResource(chain, token, amount="10000") as resource:
        resource.url                        # GET it: 402, then 200 with PAYMENT-RESPONSE once paid
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
from eth_account import Account

from gateway.devchain import DevChain

FACILITATOR_KEY = "0x" + "44" * 32
PAY_TO = "0x" + "d4" * 20


def rpc(chain: DevChain, method: str, *params: Any) -> Any:
    answer = httpx.post(
        chain.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    )
    return answer.json().get("result")


def send(chain: DevChain, to: str, data: str = "0x", value: int = 0) -> None:
    tx = rpc(chain, "eth_sendTransaction", {"from": chain.funded_account, "to": to, "data": data,
                                           "value": hex(value), "gas": hex(300_000)})  # fmt: skip
    assert tx is not None


def token_balance(chain: DevChain, token: str, holder: str) -> int:
    return int(
        rpc(
            chain,
            "eth_call",
            {"to": token, "data": "0x70a08231" + holder[2:].lower().rjust(64, "0")},
            "latest",
        ),
        16,
    )


def mint(chain: DevChain, token: str, to: str, amount: int) -> None:
    send(chain, token, "0x40c10f19" + to[2:].lower().rjust(64, "0") + f"{amount:x}".rjust(64, "0"))


class PaidResource:
    """`GET /report` costs `amount` base units of `token` on `chain`, paid to PAY_TO."""

    def __init__(
        self, chain: DevChain, token: str, amount: str = "10000", *, served_status: int = 200
    ) -> None:
        import uvicorn
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse
        from x402 import x402Facilitator, x402ResourceServer
        from x402.http import PaymentOption
        from x402.http.middleware.fastapi import PaymentMiddlewareASGI
        from x402.http.types import RouteConfig
        from x402.mechanisms.evm import FacilitatorWeb3Signer
        from x402.mechanisms.evm.exact import ExactEvmServerScheme, register_exact_evm_facilitator
        from x402.schemas import AssetAmount

        self.network = f"eip155:{chain.chain_id}"
        send(chain, Account.from_key(FACILITATOR_KEY).address, value=10**18)  # the facilitator pays gas
        facilitator = x402Facilitator()
        signer = FacilitatorWeb3Signer(private_key=FACILITATOR_KEY, rpc_url=chain.rpc_url)
        register_exact_evm_facilitator(facilitator, signer, networks=self.network)
        server = x402ResourceServer(facilitator)
        server.register(self.network, ExactEvmServerScheme())
        price = AssetAmount(amount=amount, asset=token, extra={"name": "Test USD", "version": "2"})
        routes = {"GET /report": RouteConfig(accepts=[PaymentOption(scheme="exact", pay_to=PAY_TO, price=price,
                                                                   network=self.network)])}  # fmt: skip
        app = FastAPI()
        app.add_middleware(PaymentMiddlewareASGI, routes=routes, server=server)

        @app.get("/report")
        async def report() -> JSONResponse:
            return JSONResponse({"report": "quarterly numbers"}, status_code=served_status)

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/report"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, name="x402-resource", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the x402 resource server did not start")
            time.sleep(0.02)

    def __enter__(self) -> PaidResource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
