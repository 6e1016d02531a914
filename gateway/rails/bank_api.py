"""The `bank_api` rail: the payments API most banks and PSPs share.

    POST {base_url}/payments                      create (Authorization: Bearer, Idempotency-Key)
    GET  {base_url}/payments?idempotency_key=K    status by idempotency key ({"payments": [...]})
    GET  {base_url}/payments/{id}                 status by id
    POST {base_url}/payments/{id}/reversal        compensate (Idempotency-Key: <key>:reversal)

A payment is `{"id", "status": "succeeded" | "processing" | "failed", "failure_code"?}`.
The request body is built from the action the verdict signs, through field paths in the config
(defaults fit `pay_invoice`):

    {"kind": "bank_api", "config": {
        "base_url": "https://bank.example/v1", "api_key": "…",           # api_key: write-only
        "timeout_seconds": 10,
        "reversible": true,                 # false: the bank offers no reversal (rollback: 422)
        "fields": {"amount": "amount", "currency": "asset", "creditor_name": "vendor",
                   "creditor_account": null, "creditor_iban": null, "end_to_end_id": null}}}

`end_to_end_id` null means the execution id. Amounts travel as the action's decimal string.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import aiohttp

from gateway.rails.base import (
    ABSENT,
    FAILED,
    PROCESSING,
    SUCCEEDED,
    Payment,
    RailConfigError,
    RailKind,
    RailOutcome,
    RailRefused,
    RailUnavailable,
)
from gateway.rails.outbound import check_url, pin

KIND = "bank_api"
DEFAULT_FIELDS: dict[str, str | None] = {
    "amount": "amount",
    "currency": "asset",
    "creditor_name": "vendor",
    "creditor_account": None,
    "creditor_iban": None,
    "end_to_end_id": None,
}
REQUIRED_FIELDS = ("amount", "currency", "creditor_name")
CONFIG_KEYS = {"base_url", "api_key", "timeout_seconds", "fields", "reversible"}
DEFAULT_TIMEOUT, MAX_TIMEOUT = 10.0, 60.0
_KEY_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,7}")
_AMOUNT = re.compile(r"(0|[1-9][0-9]{0,17})(\.[0-9]{1,18})?")
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_STATES = {SUCCEEDED, PROCESSING, FAILED}


def check_config(config: object) -> dict[str, Any]:
    """The configuration with defaults filled in. Raises RailConfigError naming the bad member."""
    if not isinstance(config, dict):
        raise RailConfigError("config must be an object", field="config")
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise RailConfigError(f"unknown members: {', '.join(sorted(unknown))}", field="config")
    base_url = check_url(config.get("base_url"), "config.base_url")
    api_key = config.get("api_key")
    if not isinstance(api_key, str) or not 0 < len(api_key) <= 4096 or not api_key.isprintable():
        raise RailConfigError("api_key must be a non-empty string", field="config.api_key")
    timeout = config.get("timeout_seconds", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_TIMEOUT:
        raise RailConfigError(
            f"timeout_seconds must be in (0, {MAX_TIMEOUT:g}]", field="config.timeout_seconds"
        )
    fields = dict(DEFAULT_FIELDS)
    given = config.get("fields", {})
    if not isinstance(given, dict) or set(given) - set(DEFAULT_FIELDS):
        raise RailConfigError(f"fields may set {', '.join(DEFAULT_FIELDS)}", field="config.fields")
    for name, path in given.items():
        if path is None and name not in REQUIRED_FIELDS:
            fields[name] = None
        elif isinstance(path, str) and _KEY_PATH.fullmatch(path):
            fields[name] = path
        else:
            raise RailConfigError("must be a key path inside the action, like amount or payee.iban",
                                  field=f"config.fields.{name}")  # fmt: skip
    reversible = config.get("reversible", True)
    if not isinstance(reversible, bool):
        raise RailConfigError("reversible must be true or false", field="config.reversible")
    return {"base_url": base_url, "api_key": api_key, "timeout_seconds": float(timeout), "fields": fields,
            "reversible": reversible}  # fmt: skip


def _read(action: dict[str, Any], path: str | None) -> Any:
    value: Any = action
    for step in (path or "").split("."):
        if not isinstance(value, dict) or step not in value:
            return None
        value = value[step]
    return value


def payment_body(fields: dict[str, str | None], payment: Payment) -> dict[str, Any]:
    """The `POST /payments` body for `payment`. Raises RailRefused (`payment_unmappable`) when
    the action lacks a field or holds one of the wrong shape."""

    def text(name: str, required: bool) -> str | None:
        path = fields[name]
        value = _read(payment.action, path) if path is not None else None
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value or len(value) > 256:
            raise RailRefused(
                f"action.{path} must be a non-empty string for {name}", code="payment_unmappable"
            )
        return value

    amount = text("amount", True)
    if not _AMOUNT.fullmatch(amount or ""):
        raise RailRefused(f"action.{fields['amount']} is not a decimal amount", code="payment_unmappable")
    creditor: dict[str, Any] = {"name": text("creditor_name", True)}
    for name, key in (("creditor_account", "account"), ("creditor_iban", "iban")):
        value = text(name, False)
        if value is not None:
            creditor[key] = value
    return {
        "amount": amount,
        "currency": text("currency", True),
        "creditor": creditor,
        "reference": payment.action_id,
        "end_to_end_id": text("end_to_end_id", False) or payment.execution_id,
    }


def _outcome(document: Any) -> RailOutcome:
    if (
        not isinstance(document, dict)
        or document.get("status") not in _STATES
        or not isinstance(document.get("id"), str)
    ):
        raise RailUnavailable("the bank answered a payment without id or known status")
    code = document.get("failure_code")
    code = code if isinstance(code, str) and _CODE.fullmatch(code) else ("bank_failed" if code else None)
    details = {key: document[key] for key in ("amount", "currency", "created_at") if key in document}
    return RailOutcome(document["status"], document["id"], code, document.get("failure_message"), details)


class BankApiRail:
    """A configured `bank_api` rail. Safe for concurrent use; holds one HTTP connection pool."""

    kind: ClassVar[str] = KIND

    def __init__(self, config: dict[str, Any], secrets: dict[str, str]) -> None:
        self.reversible = bool(config.get("reversible", True))
        self.base_url = config["base_url"]
        self.fields = config["fields"]
        self._timeout = aiohttp.ClientTimeout(total=config["timeout_seconds"])
        self._headers = {"Authorization": f"Bearer {secrets['api_key']}"}
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        """The connection pool, made on first use (on the event loop that uses it). aiohttp, not
        httpx: a bank call is on every execution's path, and httpx spent several times the CPU."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers=self._headers, connector=aiohttp.TCPConnector(limit=64)
            )
        return self._session

    def check(self, payment: Payment) -> None:
        """Raises RailRefused (`payment_unmappable`) when the action cannot be a payment."""
        payment_body(self.fields, payment)

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request. Raises RailUnavailable (unknown outcome) or RailRefused (4xx)."""
        target = await pin(self.base_url + path)
        headers = {**kwargs.pop("headers", {}), **target.headers}
        try:
            async with self._http().request(
                method, target.url, headers=headers, allow_redirects=False,
                server_hostname=target.extensions.get("sni_hostname"), **kwargs,
            ) as response:  # fmt: skip
                status, raw = response.status, await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:  # timeouts, refused, broken
            raise RailUnavailable(f"bank request failed: {type(exc).__name__}") from None
        if status >= 500 or status in (408, 425, 429):
            raise RailUnavailable(f"bank answered {status}")
        try:
            document = json.loads(raw)
        except ValueError:
            raise RailUnavailable(f"bank answered {status} without JSON") from None
        if status >= 400:
            code = document.get("code") if isinstance(document, dict) else None
            raise RailRefused(
                f"bank refused with {status}",
                code=code if isinstance(code, str) and _CODE.fullmatch(code) else f"bank_http_{status}",
            )
        return document

    async def submit(self, payment: Payment) -> RailOutcome:
        body = payment_body(self.fields, payment)
        headers = {"Idempotency-Key": payment.idempotency_key}
        return _outcome(await self._call("POST", "/payments", json=body, headers=headers))

    async def status(self, payment: Payment) -> RailOutcome:
        document = await self._call("GET", "/payments", params={"idempotency_key": payment.idempotency_key})
        found = document.get("payments") if isinstance(document, dict) else None
        if not isinstance(found, list):
            raise RailUnavailable("the bank's status answer has no payments list")
        if not found:
            return RailOutcome(ABSENT)
        if len(found) > 1:  # the bank broke its idempotency promise: say so loudly, pick none
            raise RailUnavailable(f"the bank holds {len(found)} payments for one idempotency key")
        return _outcome(found[0])

    async def reverse(self, payment: Payment, reference: str, reason: str) -> RailOutcome:
        headers = {"Idempotency-Key": f"{payment.idempotency_key}:reversal"}
        document = await self._call(
            "POST", f"/payments/{reference}/reversal", json={"reason": reason[:256]}, headers=headers
        )
        return _outcome(document)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


BANK_API = RailKind(KIND, ("api_key",), check_config, BankApiRail)
