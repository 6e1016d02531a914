"""The rail adapter interface: what the executor asks of a bank, a PSP or a chain.

A rail adapter turns one execution into requests to an outside system. It has three calls and
no state of its own (the executor keeps the state, durably, in the database):

- `submit(payment)`: ask the rail to carry out the execution. The request MUST carry
  `payment.idempotency_key` (derived from the execution id) so that the rail itself refuses a
  second payment for one execution, whatever happens in between.
- `status(payment)`: what the rail knows about the execution, looked up by that idempotency key.
  The executor calls it before every retry, so an adapter must tell "never received" (`ABSENT`)
  from "received" (any other state).
- `reverse(payment, reference, reason)`: compensate a succeeded execution (a refund, a
  reversal). Only for adapters with `reversible = True`.

Each returns a `RailOutcome`, or raises:
- `RailUnavailable` when the outcome is unknown (a timeout, a 5xx, a refused connection): the
  request may or may not have taken effect; the executor asks `status` before trying again.
- `RailRefused` when the rail definitively refused (a 4xx): nothing happened; the execution fails
  with the adapter's stable `code`.

Adapters must be safe to call from many tasks at once, must never log or return secrets, and
must never retry on their own (the executor owns retries, backoff and their bound).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

SUCCEEDED, PROCESSING, FAILED, ABSENT = "succeeded", "processing", "failed", "absent"


class RailError(Exception):
    """Root of the rail errors. `code` is stable snake_case; the message never holds a secret."""

    code = "rail_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class RailUnavailable(RailError):
    """The outcome is unknown (timeout, 5xx, connection refused): ask `status` before retrying."""

    code = "rail_unavailable"


class RailRefused(RailError):
    """The rail refused for good (a 4xx): nothing happened."""

    code = "rail_refused"


class RailConfigError(ValueError):
    """A rail configuration that cannot work; `field` names the bad member."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Payment:
    """What an adapter needs to carry out one execution: built by the executor from the action
    the verdict signs, never from a client's request."""

    execution_id: str
    idempotency_key: str
    tenant_id: str
    action_id: str
    action_hash: str
    action: dict[str, Any]
    # the action's signed verdict as stored ({"typed_data", "signature", "signer", "expires_at"}):
    # rails that present it to the executor (a smart account) read it; others ignore it
    verdict: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RailOutcome:
    """What the rail says about a payment (or its reversal).

    `state`: SUCCEEDED, PROCESSING (accepted, final state later: ask `status` again), FAILED
    (the rail tried and it failed: `code` and `message` say why) or ABSENT (the rail never
    received it). `reference` is the rail's own id (a payment id, a transaction hash)."""

    state: str
    reference: str | None = None
    code: str | None = None
    message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # what the rail answered, for the agent (an x402 resource's body): stored beside the
    # execution, not in the log (the log holds its hash in `details`)
    body: bytes | None = None


class RailAdapter(Protocol):
    """One configured rail of one tenant (see the module docstring for the contract)."""

    kind: ClassVar[str]
    reversible: bool  # whether `reverse` can compensate a succeeded payment

    def check(self, payment: Payment) -> None:
        """Raises RailRefused (`payment_unmappable`) when the action cannot be carried out on this
        rail at all (checked before an execution is accepted; no network)."""
        ...

    async def submit(self, payment: Payment) -> RailOutcome: ...

    async def status(self, payment: Payment) -> RailOutcome: ...

    async def reverse(self, payment: Payment, reference: str, reason: str) -> RailOutcome: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RailKind:
    """A kind of rail the gateway can run: how to check a configuration and build its adapter.

    `check(config)` returns the configuration with defaults filled in and raises
    RailConfigError; `secret_fields` are the members that are write-only (encrypted at rest,
    never shown); `build(config, secrets)` makes the adapter."""

    name: str
    secret_fields: tuple[str, ...]
    check: Callable[[object], dict[str, Any]]
    build: Callable[[dict[str, Any], dict[str, str]], RailAdapter]
