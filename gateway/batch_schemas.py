"""Wire types of batch proposals (`POST /v1/agents/{agent_id}/propose/batch`, docs/scale.md)."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.schemas import ProposeResponse, Request

MAX_BATCH_ACTIONS = 100


class BatchAction(Request):
    """One proposal of a batch: the body of a single propose, and its own idempotency key."""

    action: dict[str, Any]
    rationale: str | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None


class ProposeBatch(Request):
    actions: list[BatchAction]


class BatchResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """What the single propose route would have answered for this action: `status` 201 with
    `result` (`replayed` when its idempotency key returned the stored answer), or the refusal's
    status with its RFC 9457 `problem` (and `retry_after` seconds where that route sends
    `Retry-After`)."""

    status: int
    result: ProposeResponse | None = None
    replayed: bool = False
    problem: dict[str, Any] | None = None
    retry_after: int | None = None


class BatchAnswer(msgspec.Struct, frozen=True):
    """One result per action, in the order of the request."""

    results: list[BatchResult]
