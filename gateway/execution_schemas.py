"""Wire types of executions and rails (API v1; see gateway/services/executions.py)."""

from __future__ import annotations

from typing import Any

import msgspec


class Request(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Base of request bodies (unknown fields are refused)."""


class ExecuteRequest(Request):
    """Which rail to execute on; may be left out when exactly one rail fits the action."""

    rail: str | None = None


class RollbackRequest(Request):
    reason: str


class ConfigureRail(Request):
    kind: str
    config: dict[str, Any]


class ExecutionAccepted(msgspec.Struct, frozen=True):
    """The answer to an execute or rollback request (202): follow it with GET /v1/executions/{id}."""

    execution_id: str
    status: str
    rail: str
    action_id: str


class RollbackView(msgspec.Struct, frozen=True):
    status: str  # requested | succeeded | failed
    reason: str
    requested_by: str
    reference: str | None = None


class ExecutionView(msgspec.Struct, frozen=True):
    execution_id: str
    action_id: str
    tenant_id: str
    rail: str
    rail_kind: str
    status: str  # pending | submitted | succeeded | failed | rolled_back
    attempts: int
    requested_by: str
    verdict_digest: str
    created_at: str
    updated_at: str
    reference: str | None = None
    result: dict[str, Any] | None = None
    code: str | None = None
    message: str | None = None
    submitted_at: str | None = None
    finished_at: str | None = None
    rolled_back_at: str | None = None
    rollback: RollbackView | None = None
    audit_event_ids: list[int] = []


class ExecutionResult(msgspec.Struct, frozen=True):
    """What the rail answered for the agent, as stored (an x402 resource's body, size-limited)."""

    execution_id: str
    content_type: str
    bytes: int
    body_base64: str
    sha256: str


class RailView(msgspec.Struct, frozen=True):
    """A configured rail; secrets appear only as `sha256:<hex>` of their value."""

    name: str
    kind: str
    config: dict[str, Any]
    secrets: dict[str, str]
    created_at: str
    updated_at: str


class RailList(msgspec.Struct, frozen=True):
    rails: list[RailView]
