"""Verdict policies: the ``verdict.policy/v1`` document, its validation, and evaluation into decisions.

Typical use::

    loaded = load_policy(body, "application/yaml")   # raises PolicyInvalid with every problem
    decision = loaded.compiled.evaluate(EvaluationInput(action, agent, tenant, now))

Evaluation never raises; an error in a rule denies (``policy_error:<rule id>``).
"""

from __future__ import annotations

from policy.errors import PolicyError, PolicyInvalid, Problem, UnsupportedMediaType
from policy.evaluate import ApprovalRequirement, Check, CompiledPolicy, Decision, EvaluationInput, RoleQuota
from policy.load import LoadedPolicy, compile_document, load_policy

__all__ = [
    "ApprovalRequirement",
    "Check",
    "CompiledPolicy",
    "Decision",
    "EvaluationInput",
    "LoadedPolicy",
    "PolicyError",
    "PolicyInvalid",
    "Problem",
    "RoleQuota",
    "UnsupportedMediaType",
    "compile_document",
    "load_policy",
]
