"""A Python client for agents and approvers: propose, wait for approval, verify the verdict.

    from gateway.client import VerdictClient

    with VerdictClient("http://127.0.0.1:8000", token=AGENT_TOKEN) as verdict:
        answer = verdict.propose("ap-bot", {"type": "pay_invoice", "amount": "7800.00", ...})
        if answer["decision"] == "ESCALATE":
            record = verdict.wait_for_approval(answer["action_id"], timeout=3600)
            signed = record["signed_verdict"]          # None unless the action was allowed
        else:
            signed = answer["signed_verdict"]
        if signed is not None:
            verdict.verify_verdict(signed, action)     # raises VerdictInvalid; then execute

`verify_verdict` is what an executor should do before acting: the EIP-712 signature is by one of
the gateway's published verdict signers (`/v1/keys`, fetched once), the verdict is an ALLOW for
exactly this action (its RFC 8785 / keccak-256 hash), and it has not expired.

Errors from the gateway raise `GatewayError` with its RFC 9457 problem (`code`, `status`,
`detail`, and the rest of the document in `problem`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

from crypto.canonical import action_hash
from crypto.eip712 import DECISION_ALLOW, VerdictMessage, parse_verdict_typed_data
from crypto.errors import CryptoError
from crypto.signing import verify_verdict_signature

__all__ = ["GatewayError", "VerdictClient", "VerdictInvalid"]

PENDING = "pending_approval"
FINISHED = ("succeeded", "failed", "rolled_back")  # an execution that the executor is done with
CLOCK_SKEW_SECONDS = 30
LONG_POLL_SECONDS = 50.0  # under the gateway's 55 s bound and common proxies' 60 s idle timeouts
RETRYABLE = frozenset({429, 502, 503, 504})
# 503s are retried this many times by default (see `retry_delay`), waiting `Retry-After`
# (at most MAX_RETRY_WAIT_SECONDS) with jitter, or a growing backoff when it is absent.
DEFAULT_RETRIES = 3
MAX_RETRY_WAIT_SECONDS = 10.0
BATCH_SIZE = 100  # the most actions `POST .../propose/batch` takes


def retry_delay(response: httpx.Response, attempt: int) -> float | None:
    """Seconds to wait before sending the request of this 503 answer again, or None when it
    must not be resent: a 503 `overloaded` did nothing, and a read or a request carrying an
    `Idempotency-Key` may be repeated safely; any other write might have committed."""
    if response.status_code != 503:
        return None
    request = response.request
    repeatable = request.method in ("GET", "HEAD") or "idempotency-key" in request.headers
    if not repeatable:
        try:
            code = response.json().get("code")
        except (ValueError, AttributeError):
            code = None
        if code != "overloaded":
            return None
    try:
        wait = float(response.headers.get("retry-after", ""))
    except ValueError:
        wait = 0.25 * 2**attempt
    return min(MAX_RETRY_WAIT_SECONDS, max(0.0, wait)) * random.uniform(1.0, 1.5)


def batch_items(proposals: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """`proposals` (each `{"action": …, "rationale"?, "metadata"?, "idempotency_key"?}`, or a
    bare action with a `type`) in batches of at most BATCH_SIZE."""
    items = [p if "action" in p else {"action": p} for p in proposals]
    return [items[i : i + BATCH_SIZE] for i in range(0, len(items), BATCH_SIZE)]


class GatewayError(Exception):
    """The gateway refused a request; `code` is the problem's stable code."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.code = str(problem.get("code", "unknown"))
        self.detail = str(problem.get("detail", ""))
        super().__init__(f"{status} {self.code}: {self.detail}")


class VerdictInvalid(Exception):
    """A signed verdict that must not be acted on, and why."""


class VerdictClient:
    """A synchronous client (httpx). `token` is an agent's or admin's bearer token; the
    approval calls need none (the wallet signature is the credential)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)
        self._signers: dict[str, dict[str, Any]] | None = None
        self.retries = retries  # 503s resent when safe (`retry_delay`); 0: never

    def __enter__(self) -> VerdictClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        for attempt in range(self.retries):
            delay = retry_delay(response, attempt)
            if delay is None:
                break
            time.sleep(delay)
            response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"code": "http_error", "detail": response.text[:200]}
            raise GatewayError(response.status_code, problem if isinstance(problem, dict) else {})
        return response.json()

    # ---- agents

    def propose(
        self,
        agent_id: str,
        action: dict[str, Any],
        *,
        rationale: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        require_approval: bool = False,
    ) -> dict[str, Any]:
        """Ask for a decision. Returns the answer (`decision`, `status`, `signed_verdict`, ...).
        With `idempotency_key`, a retry of the same request returns the same answer; with
        `require_approval`, an ALLOW becomes ESCALATE (reason `approval_requested_by_agent`)."""
        body: dict[str, Any] = {"action": action}
        if require_approval:
            body["require_approval"] = True
        if rationale is not None:
            body["rationale"] = rationale
        if metadata is not None:
            body["metadata"] = metadata
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._call("POST", f"/v1/agents/{agent_id}/propose", json=body, headers=headers)

    def propose_many(
        self, agent_id: str, proposals: Iterable[dict[str, Any]], *, explain: bool = True
    ) -> list[dict[str, Any]]:
        """Propose many actions in batches of up to 100 (`POST .../propose/batch`): each is decided
        exactly as if proposed alone. `proposals` are `{"action": …, "rationale"?, "metadata"?,
        "idempotency_key"?}` (or bare actions). Returns one result per proposal, in order:
        `{"status": 201, "result": answer}` or `{"status": 4xx/5xx, "problem": …}`; give each an
        `idempotency_key` to resend failed ones safely. Raises GatewayError for a refused batch."""
        results: list[dict[str, Any]] = []
        for items in batch_items(proposals):
            answer = self._call(
                "POST",
                f"/v1/agents/{agent_id}/propose/batch",
                json={"actions": items},
                params=None if explain else {"explain": "false"},
            )
            results.extend(answer["results"])
        return results

    def get(self, action_id: str) -> dict[str, Any]:
        """The action's record (status, approvals so far, verdict once allowed)."""
        return self._call("GET", f"/v1/actions/{action_id}")

    def wait_for_approval(
        self,
        action_id: str,
        timeout: float = 3600.0,
        *,
        poll_interval: float = 1.0,
        max_interval: float = 15.0,
    ) -> dict[str, Any]:
        """Wait until the action leaves `pending_approval` and return its record: `allowed` (with
        `signed_verdict`), `rejected`, `expired` or `cancelled`.

        Waits on the tenant's events (a long poll filtered to this action), so it answers as
        soon as an answer, an expiry or a cancellation commits. After a dropped connection or a
        retryable refusal (429, 502-504) it waits `poll_interval` (growing to `max_interval`)
        and resumes from the last event seen, missing nothing. Raises TimeoutError after
        `timeout` seconds (the action stays pending; call again or cancel it), GatewayError.
        """
        deadline = time.monotonic() + timeout
        record = self.get(action_id)
        return self._wait_on_events(
            record,
            lambda: self.get(action_id),  # after events, or a quiet wait (an expiry is applied on read)
            lambda current: current["status"] != PENDING,
            tenant_id=record["tenant_id"],
            action_id=action_id,
            types=None,
            position=max(record["audit_event_ids"], default=-1),
            deadline=deadline,
            backoff=(poll_interval, max_interval),
            still=lambda _: f"action {action_id} is still pending approval after {timeout:g} s",
        )

    def _wait_on_events(
        self,
        current: dict[str, Any],
        read: Callable[[], dict[str, Any]],
        finished: Callable[[dict[str, Any]], bool],
        *,
        tenant_id: str,
        action_id: str,
        types: str | None,
        position: int,
        deadline: float,
        backoff: tuple[float, float],
        still: Callable[[dict[str, Any]], str],
    ) -> dict[str, Any]:
        """Long-poll the action's events from `position`, re-reading with `read` after each
        answer, until `finished`. A dropped connection or a retryable refusal (429, 502-504)
        waits (growing from `backoff[0]` to `backoff[1]`) and resumes from the same position.
        Raises TimeoutError(`still(current)`) at `deadline`, GatewayError."""
        interval, max_interval = backoff
        while not finished(current):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(still(current))
            try:
                page = self.events_page(
                    tenant_id,
                    after=position,
                    types=types,
                    action_id=action_id,
                    wait=min(remaining, LONG_POLL_SECONDS),
                )
                position = page["next_after"]
                current = read()
                interval = backoff[0]
            except (httpx.TransportError, GatewayError) as exc:
                if isinstance(exc, GatewayError) and exc.status not in RETRYABLE:
                    raise
                time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
                interval = min(interval * 1.5, max_interval)
        return current

    # ---- events (tenant readers see the tenant's; an agent its own actions')

    def events_page(
        self,
        tenant: str,
        *,
        after: int = -1,
        types: str | list[str] | None = None,
        action_id: str | None = None,
        agent_id: str | None = None,
        limit: int = 100,
        wait: float = 0,
    ) -> dict[str, Any]:
        """One page of the tenant's events after seq `after`: `{"events", "next_after", "head"}`.
        With `wait` (seconds, at most 55), waits for one when there is none yet."""
        params = event_params(after, types, action_id, agent_id, limit, wait)
        timeout = self._http.timeout.read + wait if self._http.timeout.read is not None else None
        return self._call("GET", f"/v1/tenants/{tenant}/events", params=params, timeout=timeout)

    def events(
        self,
        tenant: str,
        *,
        after: int | None = -1,
        types: str | list[str] | None = None,
        action_id: str | None = None,
        agent_id: str | None = None,
        follow: bool = True,
        retry_interval: float = 1.0,
        max_interval: float = 15.0,
    ) -> Iterator[dict[str, Any]]:
        """The tenant's events after seq `after` (None: from now), in log order. With `follow`,
        waits for new ones for ever (long polls), resuming after a dropped connection or a
        retryable refusal from the last event seen; without it, stops once caught up.
        Raises GatewayError for a refusal that retrying cannot cure."""
        if after is None:
            after = self.events_page(tenant, limit=1)["head"] - 1
        backoff = retry_interval
        while True:
            try:
                page = self.events_page(
                    tenant, after=after, types=types, action_id=action_id, agent_id=agent_id,
                    limit=1000, wait=LONG_POLL_SECONDS if follow else 0,
                )  # fmt: skip
            except (httpx.TransportError, GatewayError) as exc:
                if isinstance(exc, GatewayError) and exc.status not in RETRYABLE:
                    raise
                time.sleep(backoff)
                backoff = min(backoff * 1.5, max_interval)
                continue
            backoff = retry_interval
            yield from page["events"]
            after = page["next_after"]
            if not follow and after >= page["head"] - 1:
                return

    # ---- executions

    def execute(
        self, action_id: str, rail: str | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Execute an allowed action on a rail (the tenant's only fitting one when `rail` is None).
        Returns `{execution_id, status: "pending", rail, action_id}`; raises GatewayError
        (`verdict_expired`, `already_executing`/`already_executed` with `execution_id`, ...)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        body = {"rail": rail} if rail is not None else {}
        return self._call("POST", f"/v1/actions/{action_id}/execute", json=body, headers=headers)

    def get_execution(self, execution_id: str) -> dict[str, Any]:
        """The execution: `status` pending → submitted → succeeded | failed (`code`), rolled_back."""
        return self._call("GET", f"/v1/executions/{execution_id}")

    def wait_for_execution(
        self,
        execution_id: str,
        timeout: float = 60.0,
        *,
        poll_interval: float = 0.2,
        max_interval: float = 5.0,
    ) -> dict[str, Any]:
        """Wait until the execution is `succeeded`, `failed` or `rolled_back`, with no rollback
        under way (after `rollback`, this waits for its outcome), and return it.

        Waits on the tenant's events (a long poll filtered to the execution's action and the
        `execution.*` types), from the last entry of the action's record, so it answers as soon
        as the executor commits. After a dropped connection or a retryable refusal (429, 502-504)
        it waits `poll_interval` (growing to `max_interval`) and resumes from the same position.
        Raises TimeoutError after `timeout` seconds (the execution goes on; call again),
        GatewayError."""
        deadline = time.monotonic() + timeout
        action_id = self.get_execution(execution_id)["action_id"]
        position = max(self.get(action_id)["audit_event_ids"], default=-1)
        execution = self.get_execution(execution_id)  # after the position: later commits are events
        return self._wait_on_events(
            execution,
            lambda: self.get_execution(execution_id),
            is_finished,
            tenant_id=execution["tenant_id"],
            action_id=action_id,
            types="execution.*",
            position=position,
            deadline=deadline,
            backoff=(poll_interval, max_interval),
            still=lambda current: (
                f"execution {execution_id} is still {current['status']} after {timeout:g} s"
            ),
        )

    def rollback(self, execution_id: str, reason: str) -> dict[str, Any]:
        """Ask for the compensation of a succeeded execution (a tenant admin's token)."""
        return self._call("POST", f"/v1/executions/{execution_id}/rollback", json={"reason": reason})

    def rollback_action(self, action_id: str, reason: str) -> dict[str, Any]:
        """Roll back the action's execution (a tenant admin's token); GatewayError `not_executed`
        when it has none."""
        return self._call("POST", f"/v1/actions/{action_id}/rollback", json={"reason": reason})

    def cancel(self, action_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/actions/{action_id}")

    def operations(self, action_id: str, signer: str | None = None) -> dict[str, Any]:
        """What a caller without a token may do now: approve / reject per role `signer` holds
        (`{"action_id", "status", "operations"}`); with a token, read `get(...)["operations"]`."""
        params = {"signer": signer} if signer is not None else None
        return self._call("GET", f"/v1/actions/{action_id}/operations", params=params)

    def verdict(self, action_id: str) -> dict[str, Any]:
        """The signed verdict of an allowed action (GatewayError `verdict_not_available` otherwise)."""
        return self._call("GET", f"/v1/actions/{action_id}/verdict")

    def verify_verdict(
        self, signed_verdict: dict[str, Any], action: dict[str, Any], *, now: float | None = None
    ) -> VerdictMessage:
        """Check a signed verdict before acting on `action`; returns the verdict's message.

        Raises VerdictInvalid when: the typed data is not exactly a Verdict; the signature is not
        by the signer it names, or that signer is not one of the gateway's published verdict
        signers (or was retired before the verdict was issued); the verdict is not an ALLOW;
        its action hash is not the hash of `action`; it has expired (or is issued in the future).
        """
        return check_signed_verdict(signed_verdict, action, self._verdict_signers(), now=now)

    def _verdict_signers(self) -> dict[str, dict[str, Any]]:
        if self._signers is None:
            keys = self._call("GET", "/v1/keys")
            self._signers = {item["address"].lower(): item for item in keys["verdict_signers"]}
        return self._signers

    # ---- approvers (no token needed: the signature is the credential)

    def approval_request(self, action_id: str, role: str, approve: bool = True) -> dict[str, Any]:
        """The exact eth_signTypedData_v4 JSON to sign for this action, role and answer."""
        params = {"role": role, "approve": "true" if approve else "false"}
        return self._call("GET", f"/v1/actions/{action_id}/approval-request", params=params)

    def approve(
        self,
        action_id: str,
        role: str,
        signature: str,
        *,
        signer: str | None = None,
        comment: str | None = None,
    ) -> dict[str, Any]:
        body = {"approver_role": role, "signature": signature, "signer": signer, "comment": comment}
        return self._call("POST", f"/v1/actions/{action_id}/approve", json=_drop_none(body))

    def reject(
        self,
        action_id: str,
        role: str,
        signature: str,
        *,
        signer: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        body = {"approver_role": role, "signature": signature, "signer": signer, "reason": reason}
        return self._call("POST", f"/v1/actions/{action_id}/reject", json=_drop_none(body))


def check_signed_verdict(
    signed_verdict: dict[str, Any],
    action: dict[str, Any],
    published: dict[str, dict[str, Any]],
    *,
    now: float | None = None,
) -> VerdictMessage:
    """`VerdictClient.verify_verdict` given the published verdict signers (lowercase address ->
    `/v1/keys` item). Raises VerdictInvalid."""
    try:
        typed_data, signature, signer = (
            signed_verdict["typed_data"], signed_verdict["signature"], signed_verdict["signer"]
        )  # fmt: skip
        _, message = parse_verdict_typed_data(typed_data)
        verify_verdict_signature(typed_data, signature, signer)
    except (KeyError, TypeError, CryptoError) as exc:
        raise VerdictInvalid(f"not a valid signed verdict: {exc}") from None
    key = published.get(signer.lower())
    if key is None:
        raise VerdictInvalid(f"{signer} is not one of the gateway's verdict signers")
    if key.get("not_after") and message.issued_at > _unix(key["not_after"]):
        raise VerdictInvalid(f"{signer} was retired before this verdict was issued")
    if message.decision != DECISION_ALLOW:
        raise VerdictInvalid(f"the verdict's decision is {message.decision}, not ALLOW")
    try:
        expected = action_hash(action)
    except CryptoError as exc:
        raise VerdictInvalid(f"the action cannot be hashed: {exc}") from None
    if message.action_hash != expected:
        raise VerdictInvalid("the verdict is for another action (action hash differs)")
    moment = time.time() if now is None else now
    if moment >= message.expires_at:
        raise VerdictInvalid(f"the verdict expired at {message.expires_at} (Unix time)")
    if message.issued_at > moment + CLOCK_SKEW_SECONDS:
        raise VerdictInvalid("the verdict is issued in the future; check the clocks")
    return message


def is_finished(execution: dict[str, Any]) -> bool:
    """Whether the executor is done with an execution (and with any rollback asked of it)."""
    rollback = execution.get("rollback") or {}
    return execution["status"] in FINISHED and rollback.get("status") != "requested"


def event_params(
    after: int,
    types: str | list[str] | None,
    action_id: str | None,
    agent_id: str | None,
    limit: int,
    wait: float,
) -> dict[str, Any]:
    """The query of `GET /v1/tenants/{tenant}/events`."""
    params: dict[str, Any] = {"after": after, "limit": limit}
    if types:
        params["types"] = types if isinstance(types, str) else ",".join(types)
    if action_id is not None:
        params["action_id"] = action_id
    if agent_id is not None:
        params["agent_id"] = agent_id
    if wait > 0:
        params["wait"] = round(wait, 3)
    return params


def __getattr__(name: str) -> Any:
    if name == "AsyncVerdictClient":  # its own module (the same methods, awaited)
        from gateway.client_async import AsyncVerdictClient

        return AsyncVerdictClient
    raise AttributeError(name)


def _drop_none(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


def _unix(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
