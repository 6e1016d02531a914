"""The `x402` rail: pays for an HTTP resource under the verdict, with the tenant's payer key.

    {"kind": "x402", "config": {
        "payer_key": "0x…",                     # write-only: signs EIP-3009 authorizations
        "rpc_url": "https://rpc.example",        # to ask the token whether a payment settled
        "decimals": 6,                           # of the assets paid in (USDC: 6)
        "timeout_seconds": 30, "max_body_bytes": 65536}}

Action `x402_payment`: `{"type": "x402_payment", "url", "method"?: "GET", "max_amount": "0.05",
"asset": "0x<token>", "network": "eip155:<chain id>"}`.

On `submit` the rail requests the URL. On 402 it reads the payment requirements (x402 version 2:
the base64 JSON `PAYMENT-REQUIRED` header; version 1: the JSON body) and picks an option whose
scheme is `exact`, whose asset and network are the action's and whose amount is at most
`max_amount`; none → `failed`, `requirements_exceed_verdict`, and nothing is signed. Otherwise
it signs an EIP-3009 `TransferWithAuthorization` to the option's `payTo` for its amount, retries
with `PAYMENT-SIGNATURE` (v1: `X-PAYMENT`) and records the `PAYMENT-RESPONSE` settlement (the
transaction hash), the resource's HTTP status, and the SHA-256 and size of its body.

Single use, whatever happens: the authorization's nonce is keccak256 of the execution id, its
`validAfter` 0 and `validBefore` the verdict's expiry plus the option's timeout (capped), so an
attempt after a crash signs the very same authorization (RFC 6979 signatures are deterministic)
and the token accepts one transfer per nonce. `status` asks the token's
`authorizationState(payer, nonce)` before any retry: used → `succeeded` (the answer was lost);
unused → absent. The payer key never leaves the gateway.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from decimal import Decimal
from typing import Any, ClassVar

import httpx
from eth_utils import keccak, to_checksum_address

from crypto.eip712 import parse_verdict_typed_data
from crypto.errors import CryptoError
from crypto.ethaccount import Account, encode_typed_data
from gateway.rails.base import (
    ABSENT,
    FAILED,
    SUCCEEDED,
    Payment,
    RailConfigError,
    RailKind,
    RailOutcome,
    RailRefused,
    RailUnavailable,
)
from gateway.rails.jsonrpc import JsonRpc
from gateway.rails.outbound import check_url, pin

KIND = "x402"
ACTION_TYPE = "x402_payment"
CONFIG_KEYS = {"payer_key", "rpc_url", "decimals", "timeout_seconds", "max_body_bytes"}
ACTION_KEYS = {"type", "url", "method", "max_amount", "asset", "network", "rail"}
MAX_AUTHORIZATION_SECONDS = 3600
MAX_READ_BYTES = 1 << 20  # of a resource's answer; past it the body counts as truncated
_KEY = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_NETWORK = re.compile(r"eip155:([1-9][0-9]{0,15})")
_AMOUNT = re.compile(r"(0|[1-9][0-9]{0,30})(\.[0-9]{1,18})?")
_ATOMIC = re.compile(r"0|[1-9][0-9]{0,77}")
_AUTHORIZATION_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"},
    ],
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"}, {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"}, {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"}, {"name": "nonce", "type": "bytes32"},
    ],
}  # fmt: skip
_AUTHORIZATION_STATE = keccak(text="authorizationState(address,bytes32)")[:4]


def check_config(config: object) -> dict[str, Any]:
    """The configuration with defaults filled in. Raises RailConfigError naming the bad member."""
    if not isinstance(config, dict):
        raise RailConfigError("config must be an object", field="config")
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise RailConfigError(f"unknown members: {', '.join(sorted(unknown))}", field="config")
    key = config.get("payer_key")
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise RailConfigError("payer_key must be 0x and 64 hex digits", field="config.payer_key")
    decimals = config.get("decimals", 6)
    if type(decimals) is not int or not 0 <= decimals <= 36:
        raise RailConfigError("decimals must be an integer in [0, 36]", field="config.decimals")
    timeout = config.get("timeout_seconds", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 50:
        raise RailConfigError("timeout_seconds must be in (0, 50]", field="config.timeout_seconds")
    limit = config.get("max_body_bytes", 65536)
    if type(limit) is not int or not 0 <= limit <= 1 << 20:
        raise RailConfigError(
            "max_body_bytes must be an integer in [0, 1048576]", field="config.max_body_bytes"
        )
    return {"payer_key": key, "rpc_url": check_url(config.get("rpc_url"), "config.rpc_url"), "decimals": decimals,
            "timeout_seconds": float(timeout), "max_body_bytes": limit}  # fmt: skip


def _decode_header(value: str) -> Any:
    try:
        return json.loads(base64.b64decode(value, validate=True))
    except (ValueError, TypeError):
        return None


def _encode_header(document: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


class X402Rail:
    """A configured `x402` rail. Safe for concurrent use (one HTTP pool, no state of its own)."""

    kind: ClassVar[str] = KIND
    reversible = False  # a settled x402 payment has no refund in the protocol

    def __init__(self, config: dict[str, Any], secrets: dict[str, str]) -> None:
        self.config = config
        self._payer = Account.from_key(secrets["payer_key"])
        self._http = httpx.AsyncClient(timeout=config["timeout_seconds"], follow_redirects=False)

    # ---- the action

    def _action(self, payment: Payment) -> dict[str, Any]:
        """The action's members, checked. Raises RailRefused (`payment_unmappable`)."""
        action = payment.action

        def refuse(message: str) -> RailRefused:
            return RailRefused(message, code="payment_unmappable")

        if action.get("type") != ACTION_TYPE or set(action) - ACTION_KEYS:
            raise refuse(
                f"an x402 rail executes {ACTION_TYPE} actions with members {', '.join(sorted(ACTION_KEYS))}"
            )
        try:
            url = check_url(action.get("url"), "action.url")
        except RailConfigError as exc:
            raise refuse(f"action.url {exc}") from None
        method = action.get("method", "GET")
        if method not in ("GET", "POST"):
            raise refuse("action.method must be GET or POST")
        amount = action.get("max_amount")
        if not isinstance(amount, str) or not _AMOUNT.fullmatch(amount):
            raise refuse("action.max_amount must be a decimal string")
        asset, network = action.get("asset"), action.get("network")
        if not isinstance(asset, str) or not _ADDRESS.fullmatch(asset):
            raise refuse("action.asset must be the token's 0x address")
        if not isinstance(network, str) or not _NETWORK.fullmatch(network):
            raise refuse("action.network must be a CAIP-2 EVM network, eip155:<chain id>")
        limit = Decimal(amount) * 10 ** self.config["decimals"]
        return {"url": url, "method": method, "max_atomic": limit, "asset": asset.lower(), "network": network}

    def check(self, payment: Payment) -> None:
        self._action(payment)
        _verdict_expiry(payment)

    # ---- HTTP

    async def _request(self, url: str, method: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """The answer with at most MAX_READ_BYTES of its body (a resource cannot make the gateway
        read more). Raises RailUnavailable when the resource does not answer."""
        target = await pin(url)  # connect to the address that was checked (no DNS rebinding)
        try:
            async with self._http.stream(
                method,
                target.url,
                headers={**(headers or {}), **target.headers},
                extensions=target.extensions,
            ) as response:
                content = bytearray()
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > MAX_READ_BYTES:
                        break
        except httpx.HTTPError as exc:
            raise RailUnavailable(f"resource request failed: {type(exc).__name__}") from None
        # the body is decoded already: the rebuilt answer must not decode it again
        kept = [
            (k, v)
            for k, v in response.headers.items()
            if k.lower() not in ("content-encoding", "content-length")
        ]
        return httpx.Response(response.status_code, headers=kept, content=bytes(content))

    def _pick(
        self, response: httpx.Response, wanted: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None, list[Any]]:
        """(x402 version, the acceptable option or None, what was offered)."""
        header = response.headers.get("PAYMENT-REQUIRED")
        document = _decode_header(header) if header else None
        version = 2
        if not isinstance(document, dict):
            try:
                document, version = response.json(), 1
            except ValueError:
                document = None
        offered = document.get("accepts") if isinstance(document, dict) else None
        if not isinstance(offered, list):
            return version, None, []
        for option in offered:
            if not isinstance(option, dict):
                continue
            amount = option.get("amount") if version == 2 else option.get("maxAmountRequired")
            if (
                option.get("scheme") == "exact"
                and option.get("network") == wanted["network"]
                and str(option.get("asset", "")).lower() == wanted["asset"]
                and isinstance(amount, str) and _ATOMIC.fullmatch(amount) and Decimal(amount) <= wanted["max_atomic"]
                and isinstance(option.get("payTo"), str) and _ADDRESS.fullmatch(option["payTo"])
            ):  # fmt: skip
                return version, option, offered
        return version, None, offered

    # ---- signing

    def _authorization(self, payment: Payment, option: dict[str, Any], version: int) -> dict[str, Any]:
        """The EIP-3009 authorization for this execution and its signature (deterministic)."""
        chain_id = int(_NETWORK.fullmatch(option["network"]).group(1))  # type: ignore[union-attr]
        amount = option["amount"] if version == 2 else option["maxAmountRequired"]
        timeout = option.get("maxTimeoutSeconds")
        timeout = timeout if type(timeout) is int and 0 < timeout <= MAX_AUTHORIZATION_SECONDS else 300
        authorization = {
            "from": self._payer.address, "to": to_checksum_address(option["payTo"]), "value": amount,
            "validAfter": "0", "validBefore": str(_verdict_expiry(payment) + timeout),
            "nonce": nonce_of(payment.execution_id),
        }  # fmt: skip
        extra = option.get("extra") if isinstance(option.get("extra"), dict) else {}
        typed = {
            "types": _AUTHORIZATION_TYPES, "primaryType": "TransferWithAuthorization",
            "domain": {"name": str(extra.get("name", "")), "version": str(extra.get("version", "1")),
                       "chainId": chain_id, "verifyingContract": to_checksum_address(option["asset"])},
            "message": {**authorization, "value": int(amount), "validAfter": 0,
                        "validBefore": int(authorization["validBefore"]),
                        "nonce": bytes.fromhex(authorization["nonce"][2:])},
        }  # fmt: skip
        signed = Account.sign_message(encode_typed_data(full_message=typed), self._payer.key)
        return {"authorization": authorization, "signature": "0x" + bytes(signed.signature).hex()}

    # ---- the rail calls

    async def submit(self, payment: Payment) -> RailOutcome:
        wanted = self._action(payment)
        first = await self._request(wanted["url"], wanted["method"])
        if first.status_code >= 500 or first.status_code in (408, 425, 429):
            raise RailUnavailable(f"the resource answered {first.status_code}")
        if first.status_code != 402:
            return self._served(first, None, None)
        version, option, offered = self._pick(first, wanted)
        if option is None:
            return RailOutcome(FAILED, None, "requirements_exceed_verdict",
                               "no payment option is exact, in the action's asset and network, within max_amount",
                               {"offered": offered[:8]})  # fmt: skip
        signed = self._authorization(payment, option, version)
        if version == 2:
            header = "PAYMENT-SIGNATURE"
            body = {"x402Version": 2, "accepted": option, "payload": signed}
        else:
            header = "X-PAYMENT"
            body = {"x402Version": 1, "scheme": "exact", "network": option["network"], "payload": signed}
        paid = await self._request(wanted["url"], wanted["method"], {header: _encode_header(body)})
        if paid.status_code >= 500:  # it may have settled: `status` asks the token before any retry
            raise RailUnavailable(f"the resource answered {paid.status_code} to the payment")
        settlement = _decode_header(
            paid.headers.get("PAYMENT-RESPONSE") or paid.headers.get("X-PAYMENT-RESPONSE") or ""
        )
        if paid.status_code == 402 or not (isinstance(settlement, dict) and settlement.get("success")):
            reason = _decode_header(paid.headers.get("PAYMENT-REQUIRED") or "")
            error = reason.get("error") if isinstance(reason, dict) else None
            return RailOutcome(FAILED, None, "payment_refused",
                               f"the resource answered {paid.status_code} to the payment: {str(error)[:200]}",
                               {"http_status": paid.status_code, "nonce": signed["authorization"]["nonce"]})  # fmt: skip
        return self._served(paid, settlement, signed["authorization"])

    def _served(self, response: httpx.Response, settlement: dict[str, Any] | None,
                authorization: dict[str, Any] | None) -> RailOutcome:  # fmt: skip
        body = response.content[: self.config["max_body_bytes"]]
        details: dict[str, Any] = {
            "http_status": response.status_code,
            "content_type": response.headers.get("content-type", "")[:200],
            "body_sha256": hashlib.sha256(body).hexdigest(),  # of what is kept for the agent
            "body_bytes": len(body),
            "body_truncated": len(body) < len(response.content),
        }
        reference = None
        if settlement is not None and authorization is not None:
            reference = str(settlement.get("transaction", ""))[:200] or None
            details.update(transaction_hash=reference, network=settlement.get("network"),
                           payer=authorization["from"], pay_to=authorization["to"], amount=authorization["value"],
                           nonce=authorization["nonce"])  # fmt: skip
        state = SUCCEEDED if response.status_code < 400 else FAILED
        code = None if state == SUCCEEDED else f"resource_http_{response.status_code}"
        return RailOutcome(
            state, reference, code, None if state == SUCCEEDED else "the resource refused", details, body
        )

    async def status(self, payment: Payment) -> RailOutcome:
        """Whether this execution's authorization was used on the token (see the module docstring)."""
        asset = self._action(payment)["asset"]
        nonce = nonce_of(payment.execution_id)
        data = "0x" + (_AUTHORIZATION_STATE + bytes(12) + bytes.fromhex(self._payer.address[2:])
                       + bytes.fromhex(nonce[2:])).hex()  # fmt: skip
        answer = await JsonRpc(self.config["rpc_url"], self._http).read(
            "eth_call", {"to": asset, "data": data}, "latest"
        )
        try:
            used = int(answer, 16) != 0
        except (TypeError, ValueError):
            raise RailUnavailable("the token's authorizationState answer is not a number") from None
        if used:
            return RailOutcome(
                SUCCEEDED, None, details={"nonce": nonce, "note": "settled; the resource's answer was lost"}
            )
        return RailOutcome(ABSENT)

    async def reverse(self, payment: Payment, reference: str, reason: str) -> RailOutcome:
        raise RailRefused("an x402 payment cannot be reversed", code="not_reversible")

    async def close(self) -> None:
        await self._http.aclose()


def nonce_of(execution_id: str) -> str:
    """The EIP-3009 nonce of an execution's authorization: one per execution, ever."""
    return "0x" + keccak(text=f"verdict-x402:{execution_id}").hex()


def _verdict_expiry(payment: Payment) -> int:
    try:
        return parse_verdict_typed_data((payment.verdict or {}).get("typed_data"))[1].expires_at
    except CryptoError:
        raise RailRefused("the action has no readable signed verdict", code="payment_unmappable") from None


X402 = RailKind(KIND, ("payer_key",), check_config, X402Rail)
