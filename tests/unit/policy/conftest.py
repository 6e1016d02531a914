"""Shared helpers for the policy unit tests: build a policy from rules, decide on an action."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from policy import CompiledPolicy, Decision, EvaluationInput, compile_document

NOON = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
AGENT = {"id": "agent-1", "name": "payments-bot"}
TENANT = {"id": "tenant-1", "name": "acme"}
EXAMPLE_POLICY = Path(__file__).resolve().parents[3] / "examples" / "policy.yaml"

Build = Callable[..., CompiledPolicy]
Decide = Callable[..., Decision]


def make_document(*rules: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"schema": "verdict.policy/v1", "rules": list(rules), **top}


@pytest.fixture
def build() -> Build:
    """``build(rule, ..., lists=..., default=...)`` compiles a document made of those rules."""

    def build(*rules: dict[str, Any], **top: Any) -> CompiledPolicy:
        return compile_document(make_document(*rules, **top))

    return build


@pytest.fixture
def decide() -> Decide:
    """``decide(policy, action, now=..., agent=..., tenant=...)`` evaluates one request.

    Every call also evaluates with ``explain=False`` and checks that only the trace differs.
    """

    def decide(
        policy: CompiledPolicy,
        action: dict[str, Any],
        now: datetime.datetime = NOON,
        agent: dict[str, Any] | None = None,
        tenant: dict[str, Any] | None = None,
    ) -> Decision:
        request = EvaluationInput(action, agent or AGENT, tenant or TENANT, now)
        decision = policy.evaluate(request)
        quiet = policy.evaluate(request, explain=False)
        assert quiet.checks == []
        assert msgspec.structs.replace(quiet, checks=decision.checks) == decision
        return decision

    return decide


@pytest.fixture
def example_yaml() -> bytes:
    return EXAMPLE_POLICY.read_bytes()
