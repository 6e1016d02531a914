"""`@guarded`: ask Verdict before a Python function runs (sync or async).

    from datetime import timedelta
    from gateway.client import VerdictClient
    from gateway.guard import ApprovalPending, VerdictDenied, guarded

    verdict = VerdictClient("http://127.0.0.1:8000", token=AGENT_TOKEN)

    @guarded(verdict, agent="ap-bot", action_type="pay_invoice",
             idempotency_key=lambda invoice_id, **_: f"pay-{invoice_id}")
    def pay_invoice(invoice_id: str, vendor: str, amount: str, asset: str = "USDC") -> str:
        ...

The action proposed is `{"type": action_type, **arguments}` (the call's arguments by name,
defaults applied), or what `build(**arguments)` returns. Then:

- ALLOW: the signed verdict is checked (`verify_verdict`), and the function runs.
- DENY: `VerdictDenied` (with `action_id` and `reason`); the function does not run.
- ESCALATE: `ApprovalPending(action_id)` at once, or with `wait=timedelta(...)` the guard waits on
  the gateway's events for the approvers; allowed → the function runs; rejected, expired or
  cancelled → `VerdictDenied`; still pending at the end of the wait → `ApprovalPending`.

With `idempotency_key`, a repeat of the same call proposes with the same `Idempotency-Key`, so the
gateway answers with the same action: a call that raised `ApprovalPending` can simply be made
again later, and runs once it is approved. A repeat after the function ran returns the first
result without running it again (`store`, default: this process's memory; pass a persistent
mapping to survive restarts).
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, MutableMapping
from datetime import timedelta
from typing import Any, TypeVar

from gateway.client import VerdictClient
from gateway.client_async import AsyncVerdictClient

__all__ = ["ApprovalPending", "CallInProgress", "GuardError", "VerdictDenied", "guarded", "require_verdict"]

F = TypeVar("F", bound=Callable[..., Any])
MAX_REMEMBERED = 10_000  # results kept by the default store (oldest forgotten first)


class GuardError(Exception):
    """The guarded function did not run."""

    def __init__(self, message: str, action_id: str, reason: str) -> None:
        super().__init__(message)
        self.action_id = action_id
        self.reason = reason


class VerdictDenied(GuardError):
    """Verdict denied the call, or its approval ended without an ALLOW (`status`)."""

    def __init__(self, action_id: str, reason: str, status: str = "denied") -> None:
        super().__init__(f"action {action_id} was {status} ({reason})", action_id, reason)
        self.status = status


class ApprovalPending(GuardError):
    """The call waits for human approval; make it again (same idempotency key) once approved."""

    def __init__(self, action_id: str, reason: str) -> None:
        super().__init__(f"action {action_id} is pending approval ({reason})", action_id, reason)


class CallInProgress(GuardError):
    """Another call of the same approved action is running now."""

    def __init__(self, action_id: str) -> None:
        super().__init__(f"action {action_id} is already running", action_id, "in_progress")


class _Remembered(dict):
    """The default store: a dict that forgets its oldest results beyond MAX_REMEMBERED."""

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        while len(self) > MAX_REMEMBERED:
            del self[next(iter(self))]


_RESULTS: MutableMapping[str, Any] = _Remembered()


class _Guard:
    """What one `@guarded` decoration knows. Runs of one action are claimed under a lock, so
    concurrent repeats (threads or tasks) run the function at most once per action."""

    def __init__(self, fn, client, agent, action_type, build, wait, idempotency_key, store, rationale):
        self.fn, self.client, self.agent, self.action_type = fn, client, agent, action_type
        self.build, self.idempotency_key, self.rationale = build, idempotency_key, rationale
        self.wait_seconds = wait.total_seconds() if wait is not None else 0.0
        self.store = _RESULTS if store is None else store
        self.signature = inspect.signature(fn)
        self.running: set[str] = set()
        self.lock = threading.Lock()

    def request(self, args: tuple, kwargs: dict) -> tuple[dict[str, Any], str | None]:
        """The action and the idempotency key for one call. Raises TypeError for arguments the
        function would not accept."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        built = self.build(**arguments) if self.build is not None else arguments
        action = {**built, "type": self.action_type}
        key = self.idempotency_key(**arguments) if self.idempotency_key is not None else None
        return action, key

    def outcome(self, answer: dict[str, Any], record: dict[str, Any] | None) -> dict[str, Any]:
        """The signed verdict to act on. Raises VerdictDenied, ApprovalPending."""
        action_id, reason = answer["action_id"], answer["reason"]
        if answer["decision"] == "DENY":
            raise VerdictDenied(action_id, reason)
        if answer["decision"] == "ALLOW":
            return answer["signed_verdict"]
        if record is None:
            raise ApprovalPending(action_id, reason)
        if record["status"] != "allowed" or not record.get("signed_verdict"):
            raise VerdictDenied(action_id, record["reason"], record["status"])
        return record["signed_verdict"]

    def claim(self, action_id: str) -> bool:
        """True: this caller runs the action. False: it already ran (the result is stored).
        Raises CallInProgress."""
        with self.lock:
            if action_id in self.store:
                return False
            if action_id in self.running:
                raise CallInProgress(action_id)
            self.running.add(action_id)
            return True

    def release(self, action_id: str, key: str | None, result: Any, ran: bool) -> None:
        with self.lock:
            self.running.discard(action_id)
            if ran and key is not None:  # only a keyed call can be repeated onto the same action
                self.store[action_id] = result

    def call(self, args: tuple, kwargs: dict) -> Any:
        """The guarded sync call. Raises GuardError, VerdictInvalid, GatewayError, httpx.HTTPError."""
        action, key = self.request(args, kwargs)
        answer = self.client.propose(self.agent, action, idempotency_key=key, rationale=self.rationale)
        record = None
        if answer["decision"] == "ESCALATE":
            try:
                record = self.client.wait_for_approval(answer["action_id"], timeout=self.wait_seconds)
            except TimeoutError:
                record = None
        signed = self.outcome(answer, record)
        if not self.claim(answer["action_id"]):
            return self.store[answer["action_id"]]
        result, ran = None, False
        try:
            self.client.verify_verdict(signed, action)
            result, ran = self.fn(*args, **kwargs), True
            return result
        finally:
            self.release(answer["action_id"], key, result, ran)

    async def acall(self, args: tuple, kwargs: dict) -> Any:
        """The guarded async call. Raises as `call`."""
        action, key = self.request(args, kwargs)
        answer = await self.client.propose(self.agent, action, idempotency_key=key, rationale=self.rationale)
        record = None
        if answer["decision"] == "ESCALATE":
            try:
                record = await self.client.wait_for_approval(answer["action_id"], timeout=self.wait_seconds)
            except TimeoutError:
                record = None
        signed = self.outcome(answer, record)
        if not self.claim(answer["action_id"]):
            return self.store[answer["action_id"]]
        result, ran = None, False
        try:
            await self.client.verify_verdict(signed, action)
            result, ran = await self.fn(*args, **kwargs), True
            return result
        finally:
            self.release(answer["action_id"], key, result, ran)


def guarded(
    client: VerdictClient | AsyncVerdictClient,
    *,
    agent: str,
    action_type: str,
    build: Callable[..., dict[str, Any]] | None = None,
    wait: timedelta | None = None,
    idempotency_key: Callable[..., str] | None = None,
    store: MutableMapping[str, Any] | None = None,
    rationale: str | None = None,
) -> Callable[[F], F]:
    """Decorate a function so that Verdict decides each call first (see the module's docstring).
    An async function needs an `AsyncVerdictClient`, a sync one a `VerdictClient` (TypeError
    otherwise, at decoration)."""

    def decorate(fn: F) -> F:
        guard = _Guard(fn, client, agent, action_type, build, wait, idempotency_key, store, rationale)
        if inspect.iscoroutinefunction(fn):
            if not isinstance(client, AsyncVerdictClient):
                raise TypeError(f"{fn.__qualname__} is async: guard it with an AsyncVerdictClient")

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                return await guard.acall(args, kwargs)

            return run_async  # type: ignore[return-value]
        if not isinstance(client, VerdictClient):
            raise TypeError(f"{fn.__qualname__} is not async: guard it with a VerdictClient")

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            return guard.call(args, kwargs)

        return run  # type: ignore[return-value]

    return decorate


require_verdict = guarded  # the name HumanLayer users reach for
